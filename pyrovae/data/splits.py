"""The splits every loader returns (:class:`DataSplits`: rows, or padded sequences with
lengths) and the error bad data raise (:class:`DataError`), apart from the loaders
(:mod:`pyrovae.data.datasets`, :mod:`pyrovae.data.files`, :mod:`pyrovae.data.sequences`)
that build them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class DataError(ValueError):
    """Bad or missing data; the message names the problem and the fix."""


@dataclass(frozen=True, repr=False)
class DataSplits:
    """Train/test (and optional validation) examples: flat rows, or padded sequences.

    Rows: ``train_x`` is ``(N_train, D)`` float32, ``test_x`` is ``(N_test, D)``, and
    ``image_shape`` is ``(C, H, W)`` with ``C * H * W == D`` (None when the rows are not
    images). Sequences: every ``*_x`` is ``(N, T, D)`` (T may differ between splits) with
    ``*_lengths`` ``(N,)`` int64 in [1, T], each sequence's real steps (the steps past them are
    padding; lengths not given are T for every sequence), and no image shape. Labels are
    ``(N,)`` int64 or None.

    ``train_args`` and ``test_args`` are further arguments of the programs, after x (a CLI
    factory's lengths, masks or covariates): tensors of one row per example of their split,
    ``(N, ...)`` of any dtype, in the same order in both splits; the programs are called as
    ``model(x, *args)``. Empty for every built-in dataset.
    """

    name: str
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_y: torch.Tensor | None
    test_y: torch.Tensor | None
    image_shape: tuple[int, int, int] | None
    valid_x: torch.Tensor | None = None
    valid_y: torch.Tensor | None = None
    train_lengths: torch.Tensor | None = None
    test_lengths: torch.Tensor | None = None
    valid_lengths: torch.Tensor | None = None
    train_args: tuple[torch.Tensor, ...] = ()
    test_args: tuple[torch.Tensor, ...] = ()

    def __post_init__(self) -> None:
        dim, rank = self.train_x.shape[-1], self.train_x.dim()
        if rank not in (2, 3):
            raise DataError(
                f"{self.name}: examples must be rows (N, D) or sequences (N, T, D), got "
                f"{tuple(self.train_x.shape)}"
            )
        for split in ("train", "test", "valid"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x is None:
                continue
            if x.dim() != rank or x.shape[-1] != dim or (y is not None and y.shape != x.shape[:1]):
                raise DataError(f"{self.name}: split shapes differ: x {tuple(x.shape)}, D {dim}")
            lengths = getattr(self, f"{split}_lengths")
            if rank == 2:
                if lengths is not None:
                    raise DataError(f"{self.name}: {split}_lengths given for rows, not sequences")
                continue
            if lengths is None:  # every sequence uses all T steps
                lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
                object.__setattr__(self, f"{split}_lengths", lengths)
            bad = lengths.shape != x.shape[:1] or lengths.is_floating_point()
            if bad or (
                len(lengths) and not 1 <= int(lengths.min()) <= int(lengths.max()) <= x.shape[1]
            ):
                raise DataError(
                    f"{self.name}: {split}_lengths must be {x.shape[0]} integers in [1, "
                    f"{x.shape[1]}] (each sequence's real steps), got {lengths.dtype} "
                    f"{tuple(lengths.shape)}"
                )
        self._check_args()
        if self.image_shape is not None and (rank == 3 or math.prod(self.image_shape) != dim):
            raise DataError(f"{self.name}: image_shape {self.image_shape} does not give D = {dim}")

    def _check_args(self) -> None:
        """The programs' further arguments: as many in both splits, one row per example."""
        if len(self.train_args) != len(self.test_args):
            raise DataError(
                f"{self.name}: {len(self.train_args)} train arguments but "
                f"{len(self.test_args)} test arguments; both splits need the same ones"
            )
        for split in ("train", "test"):
            rows = getattr(self, f"{split}_x").shape[0]
            for i, arg in enumerate(getattr(self, f"{split}_args")):
                if not isinstance(arg, torch.Tensor) or arg.dim() < 1 or arg.shape[0] != rows:
                    shape = tuple(arg.shape) if isinstance(arg, torch.Tensor) else type(arg)
                    raise DataError(
                        f"{self.name}: {split}_args[{i}] must be a tensor of {rows} rows (one "
                        f"per example of {split}_x), got {shape}"
                    )

    @property
    def is_sequences(self) -> bool:
        """True when the examples are sequences (N, T, D) with lengths."""
        return self.train_x.dim() == 3

    @property
    def input_dim(self) -> int:
        """D, the number of values in one flattened example (in one step of a sequence)."""
        return int(self.train_x.shape[-1])

    @property
    def num_classes(self) -> int | None:
        """Largest train/test label + 1, or None without labels (:func:`class_count` checks
        that the labels are the class indices 0..C-1)."""
        labels = [y for y in (self.train_y, self.test_y) if y is not None and y.numel() > 0]
        return max(int(y.max()) for y in labels) + 1 if labels else None

    @property
    def is_binary(self) -> bool:
        """True when every value (train, test and valid) is exactly 0 or 1."""
        return all(bool(((x == 0) | (x == 1)).all()) for x in self._all_x())

    @property
    def is_unit_interval(self) -> bool:
        """True when every value (train, test and valid) lies in [0, 1]."""
        return all(bool(((x >= 0) & (x <= 1)).all()) for x in self._all_x())

    def _all_x(self) -> list[torch.Tensor]:
        return [x for x in (self.train_x, self.test_x, self.valid_x) if x is not None]

    def __repr__(self) -> str:
        valid = "" if self.valid_x is None else f", valid={tuple(self.valid_x.shape)}"
        args = f", args={len(self.train_args)}" if self.train_args else ""
        return (
            f"DataSplits(name={self.name!r}, train={tuple(self.train_x.shape)}, "
            f"test={tuple(self.test_x.shape)}{valid}, labels={self.train_y is not None}, "
            f"image_shape={self.image_shape}{args})"
        )


__all__ = ["DataError", "DataSplits"]
