"""MNIST, Fashion-MNIST and Larochelle's binarized MNIST from the files on disk.

MNIST and Fashion-MNIST are read from their four original IDX files (flat or gzipped),
streamed and checked against their headers, or downloaded by torchvision when asked; the
binarized MNIST from ``binarized_mnist.npz`` (uint8 0/1 arrays train, valid and test of 784
columns), for which there is no downloader.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import option
from .arrays import _tensor
from .files import _np_load, check_fits
from .splits import DataError, DataSplits

__all__ = ["IDX_FILES"]

#: The four IDX files of MNIST and Fashion-MNIST, each flat or gzipped (``.gz``).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
BINARIZED_MNIST_FILE = "binarized_mnist.npz"
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_REPLACE = "replace it with the original file"


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
