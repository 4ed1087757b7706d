"""Tests for pyrovae.data: built-in datasets, IDX parsing, users' files, splits and binarize."""

from __future__ import annotations

import gzip
import math
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.data import (
    DATASETS,
    IDX_FILES,
    DataError,
    DataSplits,
    binarize,
    binarize_fixed,
    load_dataset,
)
from pyrovae.errors import command_line_names

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared(sub: str) -> Path:
    if not (SHARED_DATA / sub).is_dir():
        pytest.skip(f"shared dataset folder {SHARED_DATA / sub} is absent")
    return SHARED_DATA


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.asarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _write_mnist_like(directory: Path, gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Four tiny IDX files: 6 train and 4 test images of 4x5 pixels, labels 0..9."""
    rng = np.random.default_rng(seed)
    arrays = dict(
        zip(
            IDX_FILES,
            [
                rng.integers(0, 256, (6, 4, 5)),
                rng.integers(0, 10, 6),
                rng.integers(0, 256, (4, 4, 5)),
                rng.integers(0, 10, 4),
            ],
            strict=True,
        )
    )
    for name, array in arrays.items():
        _write_idx(directory / (name + (".gz" if gz else "")), array)
    return arrays


def _check_matches(splits: DataSplits, arrays: dict[str, np.ndarray]) -> None:
    train_images, train_labels, test_images, test_labels = arrays.values()
    assert splits.image_shape == (1, 4, 5)
    expected = torch.tensor(train_images.reshape(6, 20) / 255.0, dtype=torch.float32)
    torch.testing.assert_close(splits.train_x, expected)
    assert splits.test_x.shape == (4, 20)
    assert splits.train_y.tolist() == train_labels.tolist()
    assert splits.test_y.tolist() == test_labels.tolist()


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_range_and_labels() -> None:
    d = load_dataset("digits")
    assert d.name == "digits"
    assert d.train_x.shape == (1437, 64) and d.test_x.shape == (360, 64)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.image_shape == (1, 8, 8) and d.input_dim == 64
    assert d.is_unit_interval and not d.is_binary
    assert float(d.train_x.max()) == 1.0 and float(d.train_x.min()) == 0.0
    assert d.num_classes == 10 and set(d.train_y.tolist()) == set(range(10))
    assert d.valid_x is None and d.valid_y is None


def test_digits_split_is_fixed_across_seeds() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=123, test_fraction=0.5)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


# --- MNIST and Fashion-MNIST from the shared folder ----------------------------------------------


def test_mnist_real_files() -> None:
    d = load_dataset("mnist", _shared("mnist"))
    assert d.train_x.shape == (60000, 784) and d.test_x.shape == (10000, 784)
    assert d.train_x.dtype == torch.float32 and d.image_shape == (1, 28, 28)
    assert float(d.train_x.min()) == 0.0 and float(d.train_x.max()) == 1.0
    assert d.is_unit_interval and not d.is_binary
    assert torch.bincount(d.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(d.test_y).tolist() == MNIST_TEST_COUNTS
    assert d.num_classes == 10


def test_fashion_mnist_real_files() -> None:
    d = load_dataset("fashion-mnist", _shared("fashion-mnist"))
    assert d.train_x.shape == (60000, 784) and d.test_x.shape == (10000, 784)
    assert 0.0 <= float(d.train_x.min()) and float(d.train_x.max()) <= 1.0
    assert torch.bincount(d.train_y).tolist() == [6000] * 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert d.image_shape == (1, 28, 28)


# --- synthetic IDX files -------------------------------------------------------------------------


def test_idx_flat_layout(tmp_path: Path) -> None:
    arrays = _write_mnist_like(tmp_path / "mnist", gz=False)
    _check_matches(load_dataset("mnist", tmp_path), arrays)


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_idx_torchvision_layout(tmp_path: Path, name: str, folder: str) -> None:
    arrays = _write_mnist_like(tmp_path / folder / "raw", gz=True)
    d = load_dataset(name, tmp_path)
    assert d.name == name
    _check_matches(d, arrays)


def test_idx_first_complete_directory_wins(tmp_path: Path) -> None:
    in_subdir = _write_mnist_like(tmp_path / "mnist", seed=1)
    in_root = _write_mnist_like(tmp_path, seed=2)
    _check_matches(load_dataset("mnist", tmp_path), in_root)
    (tmp_path / IDX_FILES[3]).unlink()  # data_dir/ is now incomplete: data_dir/mnist/ is used
    _check_matches(load_dataset("mnist", tmp_path), in_subdir)


def test_data_dir_from_env_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _write_mnist_like(tmp_path / "env" / "mnist")
    monkeypatch.setenv("PYROVAE_DATA_DIR", str(tmp_path / "env"))
    _check_matches(load_dataset("mnist"), arrays)
    monkeypatch.delenv("PYROVAE_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    arrays = _write_mnist_like(tmp_path / "data" / "mnist", seed=5)
    _check_matches(load_dataset("mnist"), arrays)


def test_truncated_idx_file(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    path = tmp_path / IDX_FILES[0]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated.*original file"):
        load_dataset("mnist", tmp_path)


def test_truncated_idx_header(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    (tmp_path / IDX_FILES[2]).write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated IDX header"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_idx_file(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path, gz=True)
    path = tmp_path / (IDX_FILES[0] + ".gz")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: cannot read.*truncated"):
        load_dataset("mnist", tmp_path)


def test_idx_bad_magic_number(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    (tmp_path / IDX_FILES[1]).write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: not an IDX file"):
        load_dataset("mnist", tmp_path)


def test_idx_labels_do_not_match_images(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    _write_idx(tmp_path / IDX_FILES[3], np.zeros(3))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: labels of shape \(3,\)"):
        load_dataset("mnist", tmp_path)


def test_missing_mnist_lists_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    for name in IDX_FILES:
        assert name in message
    for directory in (tmp_path, tmp_path / "mnist", tmp_path / "MNIST" / "raw"):
        assert f"  {directory}\n" in message
    assert "pass download=True" in message and "copy the original" in message
    with command_line_names(), pytest.raises(DataError, match="pass --download on a machine"):
        load_dataset("mnist", tmp_path)  # as the pyrovae command words it


def test_download_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes the import fail
    with pytest.raises(DataError, match=r'pip install "pyrovae\[download\]"'):
        load_dataset("fashion-mnist", tmp_path, download=True)


def test_download_uses_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeMNIST:  # stands in for torchvision.datasets.MNIST: writes the raw files
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            _write_mnist_like(Path(root) / "MNIST" / "raw", gz=True, seed=9)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=FakeMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    d = load_dataset("mnist", tmp_path, download=True)
    assert calls and all(root == str(tmp_path) and dl for root, _, dl in calls)
    _check_matches(d, _write_mnist_like(tmp_path / "expected", seed=9))


# --- binarized MNIST -----------------------------------------------------------------------------


def test_binarized_mnist_real_file() -> None:
    d = load_dataset("binarized-mnist", _shared("binarized-mnist"))
    assert d.train_x.shape == (50000, 784) and d.test_x.shape == (10000, 784)
    assert d.valid_x.shape == (10000, 784)
    assert d.train_y is None and d.test_y is None and d.num_classes is None
    assert d.is_binary and d.image_shape == (1, 28, 28)
    assert float(d.train_x.mean()) == pytest.approx(0.1306, abs=1e-4)
    assert float(d.valid_x.mean()) == pytest.approx(0.1311, abs=1e-4)
    assert float(d.test_x.mean()) == pytest.approx(0.1325, abs=1e-4)


def test_binarized_mnist_small_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    splits = {
        k: rng.integers(0, 2, (n, 784), dtype=np.uint8)
        for k, n in [("train", 5), ("valid", 3), ("test", 2)]
    }
    np.savez(tmp_path / "binarized_mnist.npz", **splits)
    d = load_dataset("binarized-mnist", tmp_path)
    assert torch.equal(d.valid_x, torch.tensor(splits["valid"], dtype=torch.float32))
    assert d.test_x.shape == (2, 784) and d.is_binary
    np.savez(tmp_path / "binarized_mnist.npz", train=splits["train"])
    with pytest.raises(
        DataError, match=r"expected arrays train, valid and test; found \['train'\]"
    ):
        load_dataset("binarized-mnist", tmp_path)


def test_binarized_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"binarized_mnist\.npz not found; searched"):
        load_dataset("binarized-mnist", tmp_path)


# --- users' own files ----------------------------------------------------------------------------


def _save(tmp_path: Path, name: str, **arrays: np.ndarray) -> str:
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, arrays["x"])
    else:
        np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("shape", "image_shape"),
    [
        ((10, 9), (1, 3, 3)),
        ((10, 7), None),
        ((10, 1), None),
        ((10, 4, 5), (1, 4, 5)),
        ((10, 3, 2, 2), (3, 2, 2)),
    ],
)
def test_npy_shapes(tmp_path: Path, shape: tuple, image_shape: tuple | None) -> None:
    x = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) * 0.5  # not rescaled
    path = _save(tmp_path, "x.npy", x=x)
    d = load_dataset(path)
    assert d.name == path and d.image_shape == image_shape and d.train_y is None
    assert d.train_x.shape == (8, math.prod(shape[1:])) and d.test_x.shape == (2, d.input_dim)
    rows = torch.cat([d.train_x, d.test_x])
    expected = torch.tensor(x.reshape(10, -1), dtype=torch.float32)
    torch.testing.assert_close(rows[rows[:, 0].argsort()], expected)


@pytest.mark.parametrize(("x_key", "y_key"), [("x", "y"), ("X", "labels"), ("data", "targets")])
def test_npz_with_labels(tmp_path: Path, x_key: str, y_key: str) -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10, dtype=np.float64) % 3  # integral floats are fine
    d = load_dataset(_save(tmp_path, "d.npz", **{x_key: x, y_key: y}))
    assert d.train_y.dtype == torch.int64 and d.num_classes == 3
    for xs, ys in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert torch.equal(((xs[:, 0] / 4).long() % 3), ys)  # labels stay with their rows


def test_npz_single_array_under_any_key(tmp_path: Path) -> None:
    d = load_dataset(_save(tmp_path, "d.npz", whatever=np.ones((6, 16))))
    assert d.input_dim == 16 and d.image_shape == (1, 4, 4) and d.train_y is None


def test_csv_with_header_and_label_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    lines = ["a,label,b"] + [f"{i},{i % 2},{i * 10}" for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    d = load_dataset(str(path))
    assert d.input_dim == 2 and d.image_shape is None and d.num_classes == 2
    for xs, ys in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert torch.equal(xs[:, 1], xs[:, 0] * 10) and torch.equal(xs[:, 0].long() % 2, ys)


def test_csv_y_column_and_no_header(tmp_path: Path) -> None:
    (tmp_path / "y.csv").write_text("y,p1,p2,p3,p4\n" + "1,0.1,0.2,0.3,0.4\n" * 5)
    d = load_dataset(str(tmp_path / "y.csv"))
    assert d.input_dim == 4 and d.image_shape == (1, 2, 2) and d.train_y.tolist() == [1] * 4
    (tmp_path / "plain.csv").write_text("\n".join(f"{i}, {i + 1},{i + 2}" for i in range(5)))
    d = load_dataset(str(tmp_path / "plain.csv"))
    assert d.train_x.shape == (4, 3) and d.test_x.shape == (1, 3) and d.train_y is None


def test_split_depends_on_seed_and_fraction(tmp_path: Path) -> None:
    path = _save(tmp_path, "x.npy", x=np.arange(100, dtype=np.float32).reshape(50, 2))
    a, b, c = (load_dataset(path, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.test_x, b.test_x) and not torch.equal(a.test_x, c.test_x)
    assert a.train_x.shape == (40, 2) and a.test_x.shape == (10, 2)
    half = load_dataset(path, test_fraction=0.5)
    assert half.train_x.shape == (25, 2) and half.test_x.shape == (25, 2)
    both = torch.cat([half.train_x, half.test_x])[:, 0]
    assert sorted(both.tolist()) == list(range(0, 100, 2))
    tiny = load_dataset(_save(tmp_path, "two.npy", x=np.ones((2, 3))), test_fraction=0.01)
    assert tiny.train_x.shape == (1, 3) and tiny.test_x.shape == (1, 3)


# --- error messages -------------------------------------------------------------------------------


def _npy_error(tmp_path: Path, x: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset(_save(tmp_path, "bad.npy", x=x))


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.npy: file not found"):
        load_dataset(str(tmp_path / "nope.npy"))


def test_unsupported_extension_and_unknown_name(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'.*\.npy, \.npz, \.csv"):
        load_dataset(str(tmp_path / "d.txt"))
    with pytest.raises(DataError, match=r"cifar10: unknown dataset") as info:
        load_dataset("cifar10")
    assert all(name in str(info.value) for name in (*DATASETS, ".npy", ".npz", ".csv"))


def test_non_finite_values(tmp_path: Path) -> None:
    x = np.ones((5, 4))
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    _npy_error(tmp_path, x, r"3 NaN or infinite value\(s\).*impute")


@pytest.mark.parametrize(("shape", "match"), [((6,), "1 dimension"), ((2, 1, 1, 1, 1), "5 dim")])
def test_wrong_number_of_dimensions(tmp_path: Path, shape: tuple, match: str) -> None:
    _npy_error(tmp_path, np.ones(shape), match + r".*rows are examples")


def test_zero_and_single_examples(tmp_path: Path) -> None:
    _npy_error(tmp_path, np.ones((0, 4)), r"zero examples")
    _npy_error(tmp_path, np.ones((1, 4)), r"1 example\(s\); a train/test split needs at least 2")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"h\.csv: zero examples"):
        load_dataset(str(tmp_path / "h.csv"))


def test_object_array_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cannot read it with numpy"):
        load_dataset(str(tmp_path / "obj.npy"))


def test_label_errors(tmp_path: Path) -> None:
    x = np.ones((4, 2))
    with pytest.raises(DataError, match=r"labels have shape \(3,\) but there are 4 examples"):
        load_dataset(_save(tmp_path, "a.npz", x=x, y=np.zeros(3)))
    with pytest.raises(DataError, match=r"labels must be integers, but 1 are not \(e\.g\. 0\.5\)"):
        load_dataset(_save(tmp_path, "b.npz", x=x, y=np.array([0, 1, 0.5, 2])))
    with pytest.raises(DataError, match=r"labels must be >= 0"):
        load_dataset(_save(tmp_path, "c.npz", x=x, y=np.array([0, 1, -1, 2])))


def test_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("p,q\n1,2\n3,abc\n")
    with pytest.raises(DataError, match=r"non-numeric cell 'abc' at line 3, column 2"):
        load_dataset(str(tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("1,2\n3\n")
    with pytest.raises(DataError, match=r"line 2 has 1 cells, expected 2"):
        load_dataset(str(tmp_path / "b.csv"))


def test_npz_without_recognised_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"keys \['a', 'b'\], accepted keys are x, X, data, images"):
        load_dataset(_save(tmp_path, "k.npz", a=np.ones((3, 2)), b=np.ones(3)))


def test_bad_test_fraction(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test_fraction must be between 0 and 1"):
        load_dataset(_save(tmp_path, "x.npy", x=np.ones((4, 2))), test_fraction=1.0)


# --- DataSplits ----------------------------------------------------------------------------------


def test_data_splits_properties() -> None:
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    d = DataSplits("t", x, x * 0.5, torch.tensor([0, 4]), torch.tensor([1, 2]), None)
    assert d.input_dim == 2 and d.num_classes == 5
    assert d.is_unit_interval and not d.is_binary
    assert DataSplits("t", x, x, None, None, (1, 1, 2)).is_binary
    assert not DataSplits("t", x, x * 2, None, None, None).is_unit_interval
    assert "train=(2, 2)" in repr(d) and "tensor" not in repr(d)
    with pytest.raises(DataError, match="image_shape"):
        DataSplits("t", x, x, None, None, (1, 2, 2))


# --- binarize ------------------------------------------------------------------------------------


def test_binarize_values_and_mean() -> None:
    p, n = 0.3, 200_000
    x = torch.full((n // 100, 100), p, dtype=torch.float64)
    b = binarize(x, torch.Generator().manual_seed(0))
    assert b.dtype == torch.float32 and b.shape == x.shape
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(b.mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(binarize(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))


def test_binarize_fixed_is_reproducible() -> None:
    x = torch.rand(50, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(binarize_fixed(x, seed=3), binarize_fixed(x, seed=3))
    assert not torch.equal(binarize_fixed(x, seed=3), binarize_fixed(x, seed=4))
    assert torch.equal(binarize_fixed(x), binarize(x, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_binarize_rejects_values_outside_unit_interval(bad: float) -> None:
    with pytest.raises(DataError, match=r"1 value\(s\) outside \[0, 1\]"):
        binarize(torch.tensor([0.2, bad, 0.9]))


# ---- sequences (N, T, D) with lengths --------------------------------------------------------


def _sequences(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "seq.npz"
    np.savez(path, **arrays)
    return str(path)


def test_a_users_sequences_keep_their_steps_and_lengths_and_split_by_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((10, 6, 3)).astype(np.float32)
    lengths = np.array([6, 2, 3, 4, 5, 6, 1, 2, 3, 4])
    x[1, 2:] = np.nan  # padding may hold anything: it is zeroed
    y = np.arange(10) % 2
    data = load_dataset(_sequences(tmp_path, x=x, lengths=lengths, y=y), sequences=True)
    assert data.is_sequences and data.input_dim == 3 and data.image_shape is None
    assert len(data.train_x) == 8 and len(data.test_x) == 2
    for split in ("train", "test"):
        xs, ls, ys = (getattr(data, f"{split}_{k}") for k in ("x", "lengths", "y"))
        assert xs.shape[1] == int(ls.max())  # padded to the split's longest sequence
        for row in range(len(xs)):
            steps = int(ls[row])
            original = next(i for i in range(10) if np.allclose(x[i, :steps], xs[row, :steps]))
            assert int(ls[row]) == lengths[original] and int(ys[row]) == y[original]
            assert xs[row, ls[row] :].eq(0).all()
    again = load_dataset(_sequences(tmp_path, x=x, lengths=lengths), sequences=True, seed=1)
    assert not torch.equal(again.test_lengths, data.test_lengths) or not torch.equal(
        again.test_x, data.test_x
    )
    full = load_dataset(_sequences(tmp_path, x=np.nan_to_num(x)), sequences=True)
    assert full.train_lengths.eq(6).all()  # no lengths: every sequence T steps


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((4, 5))}, r"sequences must be a numeric array \(N, T, D\)"),
        ({"x": np.zeros((4, 5, 2)), "lengths": np.array([1, 2, 6, 1])}, r"integers in \[1, 5\]"),
        ({"x": np.zeros((4, 5, 2)), "lengths": np.array([1, 2, 0, 1])}, r"integers in \[1, 5\]"),
        ({"x": np.zeros((4, 5, 2)), "lengths": np.array([1.5, 2, 3, 1])}, "integers"),
        ({"x": np.zeros((4, 5, 2)), "lengths": np.array([1, 2, 3])}, "4 integers"),
        ({"x": np.full((4, 5, 2), np.inf)}, "NaN or infinite value"),
    ],
)
def test_bad_sequences_are_refused_with_the_fix(tmp_path: Path, arrays: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset(_sequences(tmp_path, **arrays), sequences=True)


def test_sequences_and_rows_are_not_mixed_up(tmp_path: Path) -> None:
    path = _sequences(tmp_path, x=np.zeros((4, 5, 2)), lengths=np.array([1, 2, 3, 4]))
    with pytest.raises(DataError, match="holds sequences .* seqvae or dmm"):
        load_dataset(path)
    with pytest.raises(DataError, match="are sequences .* seqvae or dmm"):
        load_dataset("chorales")
    with pytest.raises(DataError, match="holds images, not sequences.* 'chorales'"):
        load_dataset("digits", sequences=True)
    csv = tmp_path / "rows.csv"
    csv.write_text("1,2\n3,4\n")
    with pytest.raises(DataError, match="a csv holds rows, not sequences"):
        load_dataset(str(csv), sequences=True)
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((4, 5, 5)))
    assert load_dataset(str(images)).image_shape == (1, 5, 5)  # 3-D rows stay images


def test_data_splits_check_sequence_lengths() -> None:
    x = torch.zeros(3, 4, 2)
    data = DataSplits("s", x, x[:2], None, None, None)
    assert data.train_lengths.tolist() == [4, 4, 4] and data.test_lengths.tolist() == [4, 4]
    with pytest.raises(DataError, match=r"train_lengths must be 3 integers in \[1, 4\]"):
        DataSplits("s", x, x, None, None, None, train_lengths=torch.tensor([1, 5, 2]))
    with pytest.raises(DataError, match="given for rows"):
        DataSplits("s", x[:, 0], x[:, 0], None, None, None, train_lengths=torch.tensor([1, 1, 1]))
    with pytest.raises(DataError, match="split shapes differ"):
        DataSplits("s", x, x[:, 0], None, None, None)
    with pytest.raises(DataError, match="image_shape"):
        DataSplits("s", x, x, None, None, (1, 1, 2))
