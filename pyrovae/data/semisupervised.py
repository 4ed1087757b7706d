"""Partly labelled data for the semi-supervised models (the M2 of Kingma et al. 2014 and the
auxiliary models built like it): the rows and their few labels (:class:`SemiSupervisedData`),
their batches, unlabelled ones alternating with labelled ones (:class:`InterleavedBatches`),
and the class-balanced subset of rows whose labels are kept (:func:`split_labeled`).

:class:`SemiSupervisedData` is a :class:`~pyrovae.infer.batches.BatchSource`: the generic
fitting code (:func:`pyrovae.fit`, :class:`~pyrovae.infer.Trainer`) takes it as it takes
tensors, without knowing the family.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import option
from ..infer.batches import Batch, Transform, copy_generator
from ..infer.distributed import shard_bounds

__all__ = [
    "InterleavedBatches",
    "SemiSupervisedData",
    "balanced_label_indices",
    "split_labeled",
]


@dataclass
class SemiSupervisedData:
    """Labelled rows ``labeled_x`` (N_l, D) with classes ``labeled_y`` (N_l,) int64, and
    unlabelled rows ``unlabeled_x`` (N_u, D) or None (every example labelled)."""

    labeled_x: torch.Tensor
    labeled_y: torch.Tensor
    unlabeled_x: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.labeled_x.shape[0] != self.labeled_y.shape[0]:
            raise ValueError(
                f"{self.labeled_x.shape[0]} labelled rows but {self.labeled_y.shape[0]} labels"
            )
        if self.labeled_x.shape[0] == 0:
            raise ValueError("semi-supervised data need at least one labelled example")
        if self.unlabeled_x is not None and self.unlabeled_x.shape[0] == 0:
            self.unlabeled_x = None

    def __len__(self) -> int:
        """N = N_l + N_u, labelled and unlabelled examples."""
        unlabeled = 0 if self.unlabeled_x is None else self.unlabeled_x.shape[0]
        return self.labeled_x.shape[0] + unlabeled

    def to(self, device: torch.device | str | None) -> SemiSupervisedData:
        """The same rows on ``device`` (unchanged when None)."""
        move = (lambda t: t) if device is None else (lambda t: t.to(device))
        unlabeled = None if self.unlabeled_x is None else move(self.unlabeled_x)
        return SemiSupervisedData(move(self.labeled_x), move(self.labeled_y), unlabeled)

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        transform: Transform | None = None,
        device: torch.device | str | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> InterleavedBatches:
        """Unlabelled batches alternating with labelled ones
        (:class:`~pyrovae.data.semisupervised.InterleavedBatches`)."""
        return InterleavedBatches(self.to(device), batch_size, shuffle, generator, transform, shard)


class InterleavedBatches:
    """Unlabelled batches ``(x,)`` alternating with labelled batches ``(x, y)``.

    An epoch is one pass over the unlabelled rows in a fresh random order; after each
    unlabelled batch comes a labelled batch, drawn from the labelled rows in random order
    and reshuffled whenever they run out, so a few labels are seen once per step (as in
    Kingma et al. 2014's code). Without unlabelled rows an epoch is one pass over the
    labelled rows (plain supervised training). Each epoch's order comes from ``generator``
    alone, so its state is the whole state of the batcher (a resumed run sees the same
    batches).

    Args:
        data: the labelled and unlabelled rows.
        batch_size: rows per batch, of either kind (a labelled batch has at most N_l rows).
        shuffle: draw the orders at random (else the rows' order, for evaluation).
        generator: the source of the orders and of ``transform``'s randomness.
        transform: applied to x of every batch, e.g. dynamic binarization.
        shard: (rank, ranks) under torch.distributed: the batches of one process with
            batch ``ranks * batch_size`` (unlabelled and labelled alike), of which this rank
            takes its contiguous share (:func:`~pyrovae.infer.distributed.shard_bounds`);
            a transform sees the whole global batch. Needs at least ``ranks`` labelled rows;
            a last unlabelled batch with fewer rows than ranks is left out (with its
            labelled partner) on every rank.
    """

    def __init__(
        self,
        data: SemiSupervisedData,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        transform: Transform | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.rank, self.ranks = shard
        if data.labeled_x.shape[0] < self.ranks:
            raise ValueError(
                f"{data.labeled_x.shape[0]} labelled rows cannot be shared by {self.ranks} "
                "ranks: each labelled batch needs a row on every rank; use fewer ranks"
            )
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator or torch.Generator(device=data.labeled_x.device)
        self.transform = transform
        #: Rows of one global batch: ``ranks * batch_size``; a labelled one has at most N_l.
        self.global_batch_size = batch_size * self.ranks
        self.labeled_batch_size = min(self.global_batch_size, data.labeled_x.shape[0])

    def _rows(self) -> int:
        """Rows of the pass an epoch makes: the unlabelled ones, else the labelled ones."""
        unlabeled = self.data.unlabeled_x
        return (self.data.labeled_x if unlabeled is None else unlabeled).shape[0]

    @property
    def num_unlabeled_batches(self) -> int:
        """Steps of an epoch's pass (each followed by a labelled step when rows are unlabelled)."""
        steps = -(-self._rows() // self.global_batch_size)
        last = self._rows() - (steps - 1) * self.global_batch_size
        return steps - (last < self.ranks)

    @property
    def num_examples(self) -> int:
        """Rows seen per epoch, over all ranks."""
        if self.data.unlabeled_x is None:
            return sum(self.global_rows(i) for i in range(self.num_unlabeled_batches))
        passes = sum(self.global_rows(2 * i) for i in range(self.num_unlabeled_batches))
        return passes + self.num_unlabeled_batches * self.labeled_batch_size

    def __len__(self) -> int:
        if self.data.unlabeled_x is None:
            return self.num_unlabeled_batches
        return 2 * self.num_unlabeled_batches

    def global_rows(self, step: int) -> int:
        """Rows of the ``step``-th batch of an epoch over all ranks."""
        if self.data.unlabeled_x is None:
            return min(self.global_batch_size, self._rows() - step * self.global_batch_size)
        if step % 2:
            return self.labeled_batch_size
        start = (step // 2) * self.global_batch_size
        return min(self.global_batch_size, self._rows() - start)

    def _order(self, n: int, device: torch.device) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(n, device=device)
        order = torch.randperm(n, generator=self.generator, device=self.generator.device)
        return order.to(device)

    def _labeled_order(self, count: int) -> torch.Tensor:
        """``count`` labelled indices: whole permutations, one after another."""
        n = self.data.labeled_x.shape[0]
        device = self.data.labeled_x.device
        orders = [self._order(n, device) for _ in range(-(-count // n))]
        return torch.cat(orders)[:count]

    def _batch(self, tensors: tuple[torch.Tensor, ...], index: torch.Tensor) -> Batch:
        """The rows ``index`` of a global batch, transformed, then this rank's share."""
        batch = tuple(t[index] for t in tensors)
        if self.transform is not None:
            batch = (self.transform(batch[0], self.generator), *batch[1:])
        if self.ranks > 1:
            first, last = shard_bounds(len(index), self.rank, self.ranks)
            batch = tuple(t[first:last] for t in batch)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        labeled = (self.data.labeled_x, self.data.labeled_y)
        size, steps = self.global_batch_size, self.num_unlabeled_batches
        if self.data.unlabeled_x is None:
            order = self._order(labeled[0].shape[0], labeled[0].device)
            for step in range(steps):
                yield self._batch(labeled, order[step * size : (step + 1) * size])
            return
        unlabeled = (self.data.unlabeled_x,)
        order = self._order(unlabeled[0].shape[0], unlabeled[0].device)
        labeled_size = self.labeled_batch_size
        labeled_order = self._labeled_order(-(-unlabeled[0].shape[0] // size) * labeled_size)
        for step in range(steps):
            yield self._batch(unlabeled, order[step * size : (step + 1) * size])
            first = step * labeled_size
            yield self._batch(labeled, labeled_order[first : first + labeled_size])

    def peek(self) -> Batch:
        """An unlabelled batch (a labelled one without unlabelled rows), without advancing
        the generator."""
        if self.data.unlabeled_x is not None:
            batch: Batch = (self.data.unlabeled_x[: self.batch_size],)
        else:
            batch = (self.data.labeled_x[: self.batch_size], self.data.labeled_y[: self.batch_size])
        if self.transform is not None:
            batch = (self.transform(batch[0], copy_generator(self.generator)), *batch[1:])
        return batch


def balanced_label_indices(
    labels: np.ndarray | torch.Tensor, num_labels: int, seed: int = 0
) -> np.ndarray:
    """Indices of ``num_labels`` rows with as many of each class as possible (the remainder
    going to randomly chosen classes), drawn with ``seed``; sorted."""
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    classes = np.unique(y)
    if num_labels < len(classes):
        raise ValueError(
            f"{option('num_labels', num_labels)} is fewer than the {len(classes)} classes; a "
            f"balanced labelled subset needs at least one example of each, so pass "
            f"{option('num_labels')} >= {len(classes)}"
        )
    if num_labels > len(y):
        raise ValueError(
            f"{option('num_labels', num_labels)} is more than the {len(y)} training examples; "
            f"pass at most {len(y)}"
        )
    rng = np.random.default_rng(seed)
    per_class = np.full(len(classes), num_labels // len(classes))
    per_class[rng.choice(len(classes), num_labels % len(classes), replace=False)] += 1
    chosen = []
    for c, count in zip(classes, per_class, strict=True):
        members = np.flatnonzero(y == c)
        if count > len(members):
            raise ValueError(
                f"class {c} has only {len(members)} training examples, fewer than the {count} "
                f"a balanced labelled subset needs; pass a smaller {option('num_labels')}"
            )
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen))


def split_labeled(
    x: torch.Tensor, y: torch.Tensor, num_labels: int | None, seed: int = 0
) -> SemiSupervisedData:
    """Keep the labels of a class-balanced subset of ``num_labels`` rows and drop the rest:
    the labelled rows and the others as unlabelled (None: keep every label).

    Example:
        >>> import torch
        >>> from pyrovae.data import load_dataset
        >>> from pyrovae.data import split_labeled
        >>> digits = load_dataset("digits")
        >>> data = split_labeled(digits.train_x, digits.train_y, num_labels=100, seed=0)
        >>> len(data.labeled_y), len(data.unlabeled_x)
        (100, 1337)
        >>> torch.bincount(data.labeled_y).tolist()  # ten of each class
        [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    """
    if num_labels is None or num_labels >= len(y):
        return SemiSupervisedData(x, y, None)
    index = torch.as_tensor(balanced_label_indices(y, num_labels, seed), device=x.device)
    unlabeled = torch.ones(len(y), dtype=torch.bool, device=x.device)
    unlabeled[index] = False
    return SemiSupervisedData(x[index], y[index], x[unlabeled])
