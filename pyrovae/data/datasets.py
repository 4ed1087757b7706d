"""The named datasets and the one entry point that loads any data: :func:`load_dataset`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import option
from .arrays import _make_splits, _split_indices
from .files import FILE_EXTENSIONS, _load_array_file, _load_sequence_file
from .mnist import _TORCHVISION_NAMES, _load_binarized_mnist, _load_idx_dataset
from .sequences import load_chorales
from .splits import DataError, DataSplits

__all__ = ["DATASETS", "SEQUENCE_DATASETS", "class_count", "load_dataset"]


#: Named datasets of flattened examples (N, D); see :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist")
#: Named datasets of sequences (N, T, D), for the sequence models (``seqvae``, ``dmm``).
SEQUENCE_DATASETS = ("chorales",)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    download: bool = False,
    sequences: bool = False,
) -> DataSplits:
    """Load a dataset named in :data:`~pyrovae.data.datasets.DATASETS` or
    :data:`~pyrovae.data.datasets.SEQUENCE_DATASETS`, or a user's
    ``.npy``/``.npz``/``.csv`` file.

    ``data_dir`` (default: ``$PYROVAE_DATA_DIR``, else ``./data``) is where the MNIST-family
    files live; the chorales' converted cache goes there when it is named (or
    ``$PYROVAE_DATA_DIR`` is set), else to the user's cache directory
    (:func:`~pyrovae.data.sequences.cache_candidates`); it is ignored for ``digits`` and files.
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
    Raises :class:`~pyrovae.data.DataError` naming the labels outside 0..C-1 (C the number of
    distinct labels) and the fix."""
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
