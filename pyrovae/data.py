"""Dataset loading: built-in image sets, the Bach chorales and users' own arrays.

Every loader returns a :class:`DataSplits` whose ``*_x`` tensors are float32 and either
``(N, D)``, one flattened example per row, or, for sequence data, ``(N, T, D)``: N sequences
padded to T steps, with ``*_lengths`` (N,) int64 giving each one's real steps. Labels (when
there are any) are ``(N,)`` int64. Nothing is downloaded unless ``download=True`` is passed
for MNIST or Fashion-MNIST.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from .errors import option
from .machine import available_memory
from .sequences import chorale_names, load_chorales, pad_sequences
from .splits import DataError, DataSplits

__all__ = [
    "DATASETS",
    "SEQUENCE_DATASETS",
    "DataError",
    "DataSplits",
    "binarize",
    "binarize_fixed",
    "check_array_file",
    "chorale_names",
    "class_count",
    "load_chorales",
    "load_dataset",
    "pad_sequences",
    "split_arrays",
    "split_sequence_arrays",
]

#: Named datasets of flattened examples (N, D); see :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist")
#: Named datasets of sequences (N, T, D), for the sequence models (``seqvae``, ``dmm``).
SEQUENCE_DATASETS = ("chorales",)
FILE_EXTENSIONS = (".npy", ".npz", ".csv")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
BINARIZED_MNIST_FILE = "binarized_mnist.npz"
X_KEYS = ("x", "X", "data", "images")
LENGTH_KEYS = ("lengths",)
Y_KEYS = ("y", "labels", "targets")
CSV_LABEL_COLUMNS = ("label", "y")
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_REPLACE = "replace it with the original file"


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    download: bool = False,
    sequences: bool = False,
) -> DataSplits:
    """Load a dataset named in :data:`DATASETS` or :data:`SEQUENCE_DATASETS`, or a user's
    ``.npy``/``.npz``/``.csv`` file.

    ``data_dir`` (default: ``$PYROVAE_DATA_DIR``, else ``./data``) is where the MNIST-family
    files live; the chorales' converted cache goes there when it is named (or
    ``$PYROVAE_DATA_DIR`` is set), else to the user's cache directory
    (:func:`~pyrovae.sequences.cache_candidates`); it is ignored for ``digits`` and files.
    ``seed`` and ``test_fraction`` set the random train/test split of a user's file
    (``ceil(test_fraction * N)`` test examples, as in scikit-learn); the named datasets have
    fixed splits.

    ``sequences`` asks for sequence data (N, T, D) with lengths, as the sequence models need:
    ``chorales``, or a user's ``.npz`` with ``x`` (N, T, D) and optionally ``lengths`` (N,)
    (a ``.npy`` (N, T, D): every sequence T steps). Without it a 3-D array is images
    (N, H, W), and sequence data are refused with the fix.

    Example:
        >>> from pyrovae.data import load_dataset
        >>> digits = load_dataset("digits")
        >>> digits.train_x.shape, digits.test_x.shape, digits.image_shape
        (torch.Size([1437, 64]), torch.Size([360, 64]), (1, 8, 8))
        >>> float(digits.train_x.min()), float(digits.train_x.max())
        (0.0, 1.0)
    """
    name = str(name)
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    key = name.strip().lower()
    if key in DATASETS and sequences:
        raise DataError(
            f"{name} holds images, not sequences; a sequence model needs data (N, T, D): "
            f"{option('dataset', SEQUENCE_DATASETS[0], python=repr(SEQUENCE_DATASETS[0]))}, or "
            "a .npz with x (N, T, D) and "
            "lengths (N,)"
        )
    if key in SEQUENCE_DATASETS:
        if not sequences:
            raise DataError(
                f"{name} are sequences (N, T, D), which this model cannot take: train a "
                "sequence model (pyrovae train seqvae or dmm)"
            )
        named = data_dir or os.environ.get("PYROVAE_DATA_DIR") or None
        try:
            return load_chorales(None if named is None else _resolve_data_dir(named))
        except ImportError as e:  # music21 converts them once; its message says how to install
            raise DataError(f"{name}: {e}") from None
        except OSError as e:
            raise DataError(f"{name}: {e}") from None
    if key == "digits":
        return _load_digits()
    if key in _TORCHVISION_NAMES:
        return _load_idx_dataset(key, _resolve_data_dir(data_dir), download)
    if key == "binarized-mnist":
        return _load_binarized_mnist(_resolve_data_dir(data_dir))
    path = Path(name).expanduser()
    if path.suffix.lower() in FILE_EXTENSIONS:
        if not path.is_file():
            raise DataError(f"{path}: file not found; check the path (relative to {Path.cwd()})")
        if sequences:
            return _load_sequence_file(name, path, seed, test_fraction)
        return _load_array_file(name, path, seed, test_fraction)
    is_file = path.suffix or path.exists() or "/" in name or os.sep in name
    problem = f"unsupported file type {path.suffix!r}" if is_file else "unknown dataset"
    names = SEQUENCE_DATASETS if sequences else DATASETS
    raise DataError(
        f"{name}: {problem}; use a dataset name ({', '.join(names)}) or a file ending in "
        f"{', '.join(FILE_EXTENSIONS)}, one example per row"
    )


def class_count(data: DataSplits) -> int | None:
    """C, the number of classes, for labels that are class indices 0..C-1 with an example of
    every class (the train, validation and test labels together); None without labels.

    A model with one output per class (the semi-supervised VAE) needs this: labels 0, 5 and 9
    would make ten classes of which seven never occur, and one stray label 255 would make 256.
    Raises :class:`DataError` naming the labels outside 0..C-1 (C the number of distinct
    labels) and the fix."""
    labels = [y for y in (data.train_y, data.valid_y, data.test_y) if y is not None]
    if not labels:
        return None
    values = torch.unique(torch.cat([y.reshape(-1).cpu() for y in labels])).tolist()
    count = len(values)
    outside = [v for v in values if not 0 <= v < count]
    if outside:
        missing = sorted(set(range(count)) - set(values))
        lie, have = ("lies", "has") if len(outside) == 1 else ("lie", "have")
        raise DataError(
            f"{data.name}: labels must be the class indices 0..C-1, each with an example; of "
            f"its {count} distinct labels, {_some(outside)} {lie} outside 0..{count - 1} (and "
            f"{_some(missing)} {have} no example): relabel them to 0..{count - 1}, e.g. "
            "y = numpy.unique(y, return_inverse=True)[1]"
        )
    return count


def _some(values: list[int], shown: int = 10) -> str:
    """The first ``shown`` values, comma-separated, and how many there are when more."""
    text = ", ".join(str(v) for v in values[:shown])
    return text if len(values) <= shown else f"{text}, ... ({len(values)} in all)"


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample every entry as Bernoulli(x): probabilities of any shape -> float32 0/1, same shape."""
    probs = torch.as_tensor(x).to(torch.float32)
    outside = int((~((probs >= 0) & (probs <= 1))).sum())
    if outside:
        raise DataError(
            f"binarize: {outside} value(s) outside [0, 1] (min {probs.min():g}, max "
            f"{probs.max():g}); scale the data to [0, 1] first, e.g. divide pixels by 255"
        )
    return torch.bernoulli(probs, generator=generator)


def binarize_fixed(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """:func:`binarize` with its own generator seeded by ``seed``: the same x gives the same 0/1."""
    x = torch.as_tensor(x)
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get("PYROVAE_DATA_DIR") or "data"
    return Path(data_dir).expanduser().absolute()


def _load_digits() -> DataSplits:
    """scikit-learn's 8x8 digits, /16 -> [0, 1], fixed split: 1437 train, 360 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    train, test = _split_indices(len(x), 0.2, 0, "digits")
    return _make_splits("digits", x, bunch.target, (1, 8, 8), train, test)


def _load_idx_dataset(key: str, root: Path, download: bool) -> DataSplits:
    """MNIST / Fashion-MNIST from the four IDX files (flat or .gz) in the first dir that has all."""
    dirs = [root, root / key, root / _TORCHVISION_NAMES[key] / "raw"]
    files = _find_idx_files(dirs)
    if files is None and download:
        _download_with_torchvision(key, root)
        files = _find_idx_files(dirs)
    if files is None:
        needed = "\n".join(f"  {f}  (or {f}.gz)" for f in IDX_FILES)
        searched = "\n".join(f"  {d}" for d in dirs)
        raise DataError(
            f"{key}: the four IDX files were not found.\nNeeded, flat or gzipped:\n{needed}\n"
            f"Searched:\n{searched}\nFix: copy the original {key} files into one of these "
            f"directories, or pass {option('download', True)} on a machine with a network."
        )
    train_x, train_y, hw = _read_idx_pair(files[0], files[1])
    test_x, test_y, _ = _read_idx_pair(files[2], files[3])
    return DataSplits(key, train_x, test_x, train_y, test_y, (1, *hw))


def _find_idx_files(dirs: list[Path]) -> list[Path] | None:
    """The four IDX files, flat or .gz, from the first of ``dirs`` that holds all of them."""
    for d in dirs:
        found = [next((p for p in (d / f, d / f"{f}.gz") if p.is_file()), None) for f in IDX_FILES]
        if all(found):
            return found
    return None


def _download_with_torchvision(key: str, root: Path) -> None:
    try:
        from torchvision import datasets
    except ImportError as e:
        raise DataError(
            f'{key}: downloading needs torchvision; run pip install "pyrovae[download]", or put '
            f"the files {', '.join(IDX_FILES)} (flat or .gz) in {root}"
        ) from e
    dataset_class = getattr(datasets, _TORCHVISION_NAMES[key])
    try:
        for train in (True, False):
            dataset_class(root=str(root), train=train, download=True)
    except Exception as e:  # network failures come in many exception types
        raise DataError(
            f"{key}: download into {root} failed ({e}); check the network, or copy the files "
            f"{', '.join(IDX_FILES)} into {root}"
        ) from e


def _read_idx_pair(
    images_path: Path, labels_path: Path
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Images ``(N, H, W)`` uint8 + labels ``(N,)`` -> x ``(N, H*W)`` /255, y int64, (H, W)."""
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images (N, H, W), found {images.dtype} with shape "
            f"{images.shape}; {_REPLACE}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path}: labels of shape {labels.shape} do not match the {len(images)} "
            f"images in {images_path.name}; {_REPLACE}"
        )
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _tensor(x), _tensor(labels, np.int64), (images.shape[1], images.shape[2])


def _read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (flat or gzipped) into an array whose shape is the header's dims.

    Read as a stream: the magic number and the header first, then exactly the bytes the
    header's shape needs (refused beforehand when they would not fit in memory), then one
    more to find trailing bytes; a gzip of gigabytes of zeros posing as MNIST costs a few
    bytes of memory, not its expanded size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or not head[3]:
                raise DataError(
                    f"{path}: not an IDX file (bad magic number {head.hex()!r}); {_REPLACE}"
                )
            header = f.read(4 * head[3])
            if len(header) < 4 * head[3]:
                raise DataError(f"{path}: truncated IDX header; {_REPLACE}")
            dims = struct.unpack(f">{head[3]}I", header)
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            expected = math.prod(dims) * dtype.itemsize
            check_fits(path, expected, f"its header gives shape {dims}")
            raw = f.read(expected)
            trailing = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); it is corrupt or truncated, {_REPLACE}") from e
    if len(raw) != expected or trailing:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        found = f"{len(raw)}" if len(raw) < expected else "more"
        raise DataError(
            f"{path}: {problem}: the header gives shape {dims} = {expected} data bytes, the file "
            f"has {found}; {_REPLACE}"
        )
    return np.frombuffer(raw, dtype=dtype, count=math.prod(dims)).reshape(dims)


#: An array takes this many times its bytes to load: the array, and its float32 copy.
LOAD_FACTOR = 3
#: A compressed member expanding more than this many times is taken for a decompression
#: bomb once it expands to more than :data:`BOMB_BYTES` (real data compress 2 to 50 times).
BOMB_RATIO = 200
BOMB_BYTES = 2**30


def check_fits(path: Path | str, nbytes: int, claim: str) -> None:
    """Raise DataError when ``nbytes`` of data (what ``claim`` says of the file) would not fit
    in the memory this process may still take, :data:`LOAD_FACTOR` times over."""
    have = available_memory()
    if nbytes * LOAD_FACTOR > have:
        raise DataError(
            f"{path}: {claim}, {nbytes / 1e9:.3g} GB, more than fits in the {have / 1e9:.3g} GB "
            "of memory available to load it; use a smaller file, or a machine with more memory"
        )


def _npy_header(f, path: Path | str, size: int) -> None:
    """Read a ``.npy`` header from ``f`` and check its claim against the ``size`` bytes the
    file (or archive member) holds and against the memory: a header claiming (1e6, 1e6) on
    64 bytes of data is refused, not allocated."""
    version = np.lib.format.read_magic(f)
    read = getattr(np.lib.format, f"read_array_header_{version[0]}_{version[1]}", None)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("it holds Python objects")
    nbytes = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if nbytes != held:
        raise DataError(
            f"{path}: its header claims an array {shape} of {dtype} ({nbytes} bytes), but the "
            f"file holds {held}; it is damaged or not what it claims: save it again with "
            "numpy.save / numpy.savez"
        )
    check_fits(path, nbytes, f"its header claims an array {shape} of {dtype}")


def _check_arrays(path: Path) -> None:
    with open(path, "rb") as f:
        check_array_file(f, path)


def check_array_file(f: BinaryIO, path: Path | str) -> None:
    """Check every array's header in the ``.npy`` or ``.npz`` open as ``f`` (binary, seekable)
    before anything is loaded: the size it claims against the bytes it holds and the memory
    (``check_fits``). An ``.npz`` member's size is the archive's (``zipfile`` reads no
    more and checks its CRC), and one that expands ``BOMB_RATIO`` times past
    ``BOMB_BYTES`` is refused as a decompression bomb. Raises DataError, or ValueError /
    ``zipfile.BadZipFile`` for a file numpy could not read either."""
    f.seek(0)
    if not f.read(4).startswith(b"PK\x03\x04"):
        f.seek(0)
        _npy_header(f, path, os.fstat(f.fileno()).st_size)
        return
    f.seek(0)
    with zipfile.ZipFile(f) as archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        check_fits(path, total, f"its arrays expand to {total} bytes")
        for member in members:
            where = f"{path}[{member.filename}]"
            if member.file_size > BOMB_BYTES and member.file_size > BOMB_RATIO * max(
                member.compress_size, 1
            ):
                raise DataError(
                    f"{where}: {member.compress_size} compressed bytes expand to "
                    f"{member.file_size}, a decompression bomb; use the original file"
                )
            if member.filename.endswith(".npy"):
                with archive.open(member) as m:
                    _npy_header(m, where, member.file_size)


def _load_binarized_mnist(root: Path) -> DataSplits:
    """Larochelle's binarized MNIST: train (50000, 784), valid/test (10000, 784), no labels."""
    candidates = [root / BINARIZED_MNIST_FILE, root / "binarized-mnist" / BINARIZED_MNIST_FILE]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(
            f"binarized-mnist: {BINARIZED_MNIST_FILE} not found; searched "
            f"{', '.join(map(str, candidates))}. Fix: copy the file (uint8 0/1 arrays train, "
            "valid, test with 784 columns) into one of these places; there is no downloader."
        )
    arrays = _np_load(path)
    if not isinstance(arrays, dict) or not {"train", "valid", "test"} <= arrays.keys():
        keys = sorted(arrays) if isinstance(arrays, dict) else "a single array"
        raise DataError(f"{path}: expected arrays train, valid and test; found {keys}")
    x = {}
    for split in ("train", "valid", "test"):
        a = arrays[split]
        if a.ndim != 2 or a.shape[1] != 784 or not ((a == 0) | (a == 1)).all():
            raise DataError(f"{path}: {split!r} must be (N, 784) of 0/1, got shape {a.shape}")
        x[split] = _tensor(a)
    return DataSplits("binarized-mnist", x["train"], x["test"], None, None, (1, 28, 28), x["valid"])


def _load_array_file(name: str, path: Path, seed: int, test_fraction: float) -> DataSplits:
    if path.suffix.lower() == ".csv":
        x, y = _read_csv(path)
    else:
        loaded = _np_load(path)
        if isinstance(loaded, dict) and any(k in loaded for k in LENGTH_KEYS):
            raise DataError(
                f"{path}: holds sequences (it has lengths), which this model cannot take: "
                "train a sequence model (pyrovae train seqvae or dmm)"
            )
        x, y = _pick_npz_arrays(loaded, path) if isinstance(loaded, dict) else (loaded, None)
    return split_arrays(x, y, name, seed=seed, test_fraction=test_fraction)


def _load_sequence_file(name: str, path: Path, seed: int, test_fraction: float) -> DataSplits:
    """A user's sequences: ``x`` (N, T, D) with optional ``lengths`` (N,) and labels (N,),
    split into train/test by a permutation seeded with ``seed``."""
    if path.suffix.lower() == ".csv":
        raise DataError(
            f"{path}: a csv holds rows, not sequences; save them with numpy.savez(path, "
            "x=sequences (N, T, D), lengths=steps (N,))"
        )
    loaded = _np_load(path)
    lengths = None
    if isinstance(loaded, dict):
        length_key = next((k for k in LENGTH_KEYS if k in loaded), None)
        lengths = loaded.pop(length_key) if length_key else None
        x, y = _pick_npz_arrays(loaded, path)
    else:
        x, y = loaded, None
    return split_sequence_arrays(x, lengths, y, name, seed=seed, test_fraction=test_fraction)


def split_sequence_arrays(
    x: np.ndarray,
    lengths: np.ndarray | None = None,
    y: np.ndarray | None = None,
    name: str = "sequences",
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """Validate a user's sequences ``x`` (N, T, D), padded after each one's ``lengths`` (N,)
    steps (None: all T), and labels ``y`` (N,) or None, and split them into train/test by a
    permutation seeded with ``seed``. The padded steps are set to zero."""
    x = np.asarray(x)
    if x.ndim != 3 or x.dtype.kind not in "biuf" or 0 in x.shape:
        raise DataError(
            f"{name}: sequences must be a numeric array (N, T, D) of N sequences of T steps of "
            f"D values, got {x.dtype} {x.shape}; one sequence of T values is (1, T, 1)"
        )
    n, steps = x.shape[:2]
    x = x.astype(np.float32)
    if lengths is None:
        lengths = np.full(n, steps, dtype=np.int64)
    lengths = np.asarray(lengths)
    integral = lengths.dtype.kind in "iu" or (
        lengths.dtype.kind == "f" and np.all(np.isfinite(lengths) & (lengths == np.round(lengths)))
    )
    if lengths.shape != (n,) or not integral or lengths.min() < 1 or lengths.max() > steps:
        raise DataError(
            f"{name}: lengths must be {n} integers in [1, {steps}] (each sequence's real "
            f"steps), got {lengths.dtype} {lengths.shape}"
        )
    lengths = lengths.astype(np.int64)
    real = np.arange(steps) < lengths[:, None]
    bad = int(np.count_nonzero(~np.isfinite(x[real])))
    if bad:
        raise DataError(
            f"{name}: {bad} NaN or infinite value(s) in the real steps; clean the data or "
            "impute the missing values first (padding past each length may hold anything)"
        )
    x[~real] = 0.0
    if y is not None:
        y = _check_labels(y, n, name)
    train, test = _split_indices(n, test_fraction, seed, name)

    def part(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        longest = int(lengths[index].max())
        return _tensor(x[index, :longest]), _tensor(lengths[index], np.int64)

    (train_x, train_l), (test_x, test_l) = part(train), part(test)
    ys = (None, None) if y is None else (_tensor(y[train], np.int64), _tensor(y[test], np.int64))
    return DataSplits(name, train_x, test_x, *ys, None, train_lengths=train_l, test_lengths=test_l)


def split_arrays(
    x: np.ndarray,
    y: np.ndarray | None = None,
    name: str = "arrays",
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    args: tuple[torch.Tensor, ...] = (),
) -> DataSplits:
    """Validate a user's examples ``x`` ((N, D), (N, H, W) or (N, C, H, W)) and labels ``y``
    (N,) or None, and split them into train/test by a permutation seeded with ``seed``.

    ``args``: further arguments of the programs (N, ...), each split with x by the same
    permutation and kept as it is (dtype and shape); see :class:`DataSplits`."""
    flat, image_shape = _flatten_examples(np.asarray(x), name)
    if y is not None:
        y = _check_labels(y, len(flat), name)
    for i, arg in enumerate(args):
        if not isinstance(arg, torch.Tensor) or arg.dim() < 1 or arg.shape[0] != len(flat):
            shape = tuple(arg.shape) if isinstance(arg, torch.Tensor) else type(arg).__name__
            raise DataError(
                f"{name}: args[{i}] must be a tensor of {len(flat)} rows, one per example of x, "
                f"got {shape}"
            )
    train, test = _split_indices(len(flat), test_fraction, seed, name)
    splits = _make_splits(name, flat, y, image_shape, train, test)
    if not args:
        return splits
    rows = [torch.from_numpy(i) for i in (train, test)]
    train_args, test_args = ([a.detach().cpu()[r].contiguous() for a in args] for r in rows)
    return dataclasses.replace(splits, train_args=tuple(train_args), test_args=tuple(test_args))


def _np_load(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """``np.load`` without pickles: an ``.npy`` array, or an ``.npz`` as a dict of arrays."""
    _check_arrays_readable(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path}: cannot read it with numpy ({e}); save numeric arrays with numpy.save / "
            "numpy.savez (object arrays and pickles are not accepted)"
        ) from e


def _check_arrays_readable(path: Path) -> None:
    """:func:`_check_arrays`, its own refusals as they are and any other failure to read the
    headers as the file's problem."""
    try:
        _check_arrays(path)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path}: cannot read it with numpy ({e}); save numeric arrays with numpy.save / "
            "numpy.savez (object arrays and pickles are not accepted)"
        ) from e


def _pick_npz_arrays(
    arrays: dict[str, np.ndarray], path: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Examples under one of X_KEYS (or the only array), labels under one of Y_KEYS if present."""
    x_key = next((k for k in X_KEYS if k in arrays), None)
    if x_key is None and len(arrays) == 1:
        x_key = next(iter(arrays))
    if x_key is None:
        raise DataError(
            f"{path}: no examples array found; the file has keys {sorted(arrays)}, accepted keys "
            f"are {', '.join(X_KEYS)} (labels: {', '.join(Y_KEYS)}); re-save it as "
            "numpy.savez(path, x=examples, y=labels)"
        )
    y_key = next((k for k in Y_KEYS if k in arrays and k != x_key), None)
    return arrays[x_key], None if y_key is None else arrays[y_key]


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric csv, optional header row; a header column ``label``/``y`` holds the labels."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [
                (reader.line_num, [c.strip() for c in r]) for r in reader if any(map(str.strip, r))
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it as a csv text file ({e})") from e
    header = rows.pop(0)[1] if rows and not all(map(_is_number, rows[0][1])) else None
    if not rows:
        raise DataError(f"{path}: zero examples (no data rows); put one example per row")
    width = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} cells, expected {width}")
    try:
        values = np.array([row for _, row in rows], dtype=np.float64).reshape(len(rows), width)
    except ValueError:
        line, row = next((line, r) for line, r in rows if not all(map(_is_number, r)))
        col = next(i for i, cell in enumerate(row) if not _is_number(cell))
        raise DataError(
            f"{path}: non-numeric cell {row[col]!r} at line {line}, column {col + 1}; every cell "
            "below the optional header must be a number: clean or impute such cells"
        ) from None
    names = [h.lower() for h in header or []]
    label_col = next((i for i, h in enumerate(names) if h in CSV_LABEL_COLUMNS), None)
    if label_col is None:
        return values, None
    return np.delete(values, label_col, axis=1), values[:, label_col]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _flatten_examples(x: np.ndarray, source: str | Path) -> tuple[np.ndarray, tuple | None]:
    """Validate ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)`` -> float32 ``(N, D)``, image shape."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: array has non-numeric dtype {x.dtype}; store numbers")
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{source}: array has {x.ndim} dimension(s), shape {x.shape}; rows are examples, so "
            "it must be 2-D (N, D), 3-D (N, H, W) or 4-D (N, C, H, W)"
            + (" (reshape 1-D data to (N, 1) for single-value examples)" if x.ndim == 1 else "")
        )
    n, dim = x.shape[0], math.prod(x.shape[1:])
    if n == 0 or dim == 0:
        raise DataError(f"{source}: zero examples or features (shape {x.shape}); nothing to fit")
    with np.errstate(over="ignore"):
        flat = x.reshape(n, dim).astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(flat)))
    if bad:
        raise DataError(
            f"{source}: {bad} NaN or infinite value(s) (out of {flat.size}); clean the data or "
            "impute the missing values first"
        )
    if x.ndim > 2:
        image_shape = tuple(int(s) for s in ((1, *x.shape[1:]) if x.ndim == 3 else x.shape[1:]))
    else:
        side = math.isqrt(dim)
        image_shape = (1, side, side) if side >= 2 and side * side == dim else None
    return flat, image_shape


def _check_labels(y: np.ndarray, n: int, source: str | Path) -> np.ndarray:
    """Labels ``(N,)`` (or ``(N, 1)``) of integral values -> int64 ``(N,)``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{source}: labels have shape {y.shape} but there are {n} examples; give exactly "
            "one label per example (row)"
        )
    if y.dtype.kind not in "biuf":
        raise DataError(f"{source}: labels have non-numeric dtype {y.dtype}; use integers 0..K-1")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"{source}: labels must be integers, but {int(bad.sum())} are not "
                f"(e.g. {y[bad][0]}); map them to class indices 0..K-1"
            )
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{source}: labels must be >= 0 (found {y.min()}); map them to 0..K-1")
    return y


def _split_indices(
    n: int, test_fraction: float, seed: int, source: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test indices: the last ceil(test_fraction * n) of a seeded permutation test."""
    if n < 2:
        raise DataError(f"{source}: {n} example(s); a train/test split needs at least 2")
    n_test = min(max(math.ceil(round(test_fraction * n, 9)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - n_test], perm[n - n_test :]


def _make_splits(name: str, x, y, image_shape, train, test) -> DataSplits:
    """Rows ``x`` (N, D) and labels ``y`` (N,) or None, split by ``train``/``test`` indices."""
    ys = (None, None) if y is None else (_tensor(y[train], np.int64), _tensor(y[test], np.int64))
    return DataSplits(name, _tensor(x[train]), _tensor(x[test]), *ys, image_shape)


def _tensor(a: np.ndarray, dtype: type = np.float32) -> torch.Tensor:
    """``a`` as a tensor of ``dtype``, copied only when not already writable and contiguous."""
    return torch.from_numpy(np.require(a, dtype, ["C", "W"]))
