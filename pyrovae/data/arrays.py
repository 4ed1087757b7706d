"""Users' in-memory arrays checked and split into train/test: rows (N, D) or images, with
optional labels, and padded sequences (N, T, D) with lengths.

The train/test split is a permutation seeded with ``seed`` whose last
``ceil(test_fraction * N)`` examples are the test examples, as in scikit-learn.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from .splits import DataError, DataSplits

__all__ = ["split_arrays", "split_sequence_arrays"]


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
