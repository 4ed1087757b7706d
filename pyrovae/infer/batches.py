"""Where data becomes the program's arguments: minibatches as tuples ``(x,)`` or ``(x, y)``.

Tensors that fit in memory are cut into batches by index (no per-item DataLoader);
a user's Dataset or DataLoader passes through torch's own machinery; partly labelled
data (:class:`SemiSupervisedData`) become alternating unlabelled and labelled batches;
padded sequences (:class:`SequenceData`) become batches of similar lengths, each cut to
its longest sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

from .distributed import shard_bounds

Batch = tuple[torch.Tensor, ...]


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
        (:class:`~pyrovae.infer.batches.InterleavedBatches`)."""
        return InterleavedBatches(self.to(device), batch_size, shuffle, generator, transform, shard)


@dataclass
class SequenceData:
    """Padded sequences x (N, T, ...) with their lengths (N,) int64 in [1, T], and optional
    per-sequence tensors ``extra`` (N, ...) (e.g. labels), batched by length.

    A training batch is ``(x[:, :S], lengths, *extra)``: cut to S, the first of the bucket
    lengths 8, 16, 24, 32, 40, 56, 72, 96, ... (each a multiple of 8 about 1.25 times the
    last; T for the last) that holds its longest sequence
    (:func:`~pyrovae.infer.batches.bucket_length`). A program that masks the steps past each length
    (pyrovae's sequence models do) has the same loss on the cut batch as on the padded one, for the
    work of S steps instead of T; the few bucket lengths keep the batch shapes, each captured once
    (:class:`~pyrovae.infer.captured.CapturedLoss`), few. A program that reads the padding
    must not be given its data in this form.

    With ``pool`` > 0 each pass is a random permutation cut into pools of ``pool`` batches;
    each pool is sorted by length before it is cut into batches, and the pass takes the
    full batches in a random order (the last, smaller batch, the shortest sequences of the
    last pool, stays last), so a batch holds sequences of similar lengths and little padding
    (the length-grouped sampling of Hugging Face's ``group_by_length``, whose pools are 50
    batches, and torchtext's ``BucketIterator``). Pools keep the batches random: a
    sequence's batch mates change from pass to pass. 0: batches of a plain random
    permutation, each cut to its own longest sequence.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    extra: tuple[torch.Tensor, ...] = ()
    pool: int = 8

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() < 2:
            raise ValueError(
                f"x must be padded sequences (N, T, ...), got shape {tuple(self.x.shape)}"
            )
        if self.lengths.shape != (n,) or self.lengths.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"lengths must be (N,) = ({n},) integers, got {tuple(self.lengths.shape)} "
                f"{self.lengths.dtype}"
            )
        if n and not bool(((self.lengths >= 1) & (self.lengths <= self.x.shape[1])).all()):
            raise ValueError(f"lengths must lie in [1, T] = [1, {self.x.shape[1]}]")
        for t in self.extra:
            if t.shape[0] != n:
                raise ValueError(f"every extra tensor needs {n} rows, got {t.shape[0]}")
        if self.pool < 0:
            raise ValueError(f"pool must be >= 0 batches, got {self.pool}")

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(x, lengths, *extra)``, uncut: the programs' arguments for the whole data."""
        return (self.x, self.lengths, *self.extra)

    def __len__(self) -> int:
        """N, the sequences."""
        return self.x.shape[0]

    def to(self, device: torch.device | str | None) -> SequenceData:
        """The same sequences, lengths and extra tensors on ``device`` (unchanged when None)."""
        if device is None:
            return self
        moved = tuple(t.to(device) for t in self.tensors)
        return SequenceData(moved[0], moved[1], moved[2:], self.pool)

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        transform: Transform | None = None,
        device: torch.device | str | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> SequenceBatches:
        """Batches grouped by length and cut to their bucket
        (:class:`~pyrovae.infer.batches.SequenceBatches`)."""
        return SequenceBatches(self.to(device), batch_size, shuffle, generator, transform, shard)


def bucket_length(longest: int, steps: int) -> int:
    """The first bucket length 8, 16, 24, 32, 40, 56, 72, ... (each the multiple of 8 at or
    above 1.25 times the last) at least ``longest``; ``steps`` (T) where the bucket after
    that one would pass T, so the longest batches share one shape.

    Example:
        >>> from pyrovae.infer.batches import bucket_length
        >>> [bucket_length(n, steps=200) for n in (3, 8, 9, 33, 100, 190)]
        [8, 8, 16, 40, 120, 200]
    """
    bucket = 8
    while bucket < longest:
        bucket = _next_bucket(bucket)
    return steps if _next_bucket(bucket) >= steps else bucket


def _next_bucket(bucket: int) -> int:
    return 8 * -(-(bucket * 5) // 32)  # ceil(1.25 * bucket / 8) * 8


#: ``transform(x, generator) -> x``, applied to the first tensor of each training batch.
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """Data that cut themselves into batches: a container of a model family's data (partly
    labelled rows, padded sequences, ...) that the generic fitting code accepts as it
    accepts tensors, without knowing the family.

    ``len(data)`` is N, the examples of the data set (the data plate's full size, by which a
    program with global latents scales a batch); :meth:`batches` returns an iterable of
    argument tuples, re-iterable once per epoch, which may also have ``peek()`` (the first
    batch without advancing any random state) and ``state_dict()``/``load_state_dict()``
    (to resume mid-run).
    """

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        transform: Transform | None,
        device: torch.device | str | None,
        shard: tuple[int, int],
    ) -> Iterable[Batch]:
        """Batches of about ``batch_size`` examples as program arguments on ``device``, in a
        fresh random order each pass when ``shuffle`` (drawn from ``generator``, whose state
        is the order's whole state), ``transform`` applied to each batch's x, and ``shard``
        (rank, ranks): this rank's share of each global batch under torch.distributed."""
        ...


#: Accepted by :func:`pyrovae.fit`: a tensor x (N, D), a tuple (x, y), a Dataset, a
#: DataLoader, or a :class:`BatchSource` (:class:`SemiSupervisedData`, :class:`SequenceData`).
Data = torch.Tensor | tuple | list | Dataset | DataLoader | BatchSource


class TensorBatches:
    """Minibatches of in-memory tensors that share their first dimension N.

    Args:
        tensors: tensors of shape (N, ...), e.g. x (N, D) and labels y (N,).
        batch_size: examples per batch; the last batch may be smaller.
        shuffle: a fresh permutation each pass, drawn from ``generator``.
        generator: the source of randomness for shuffling and ``transform`` (its state
            is part of a checkpoint, so a resumed run sees the same batches).
        transform: applied to x of each batch, e.g. dynamic binarization.
        shard: (rank, ranks) under torch.distributed: every pass is cut into global batches
            of ``ranks * batch_size`` rows of one permutation (the same on every rank, from
            generators seeded alike), and this rank takes its contiguous share of each
            (:func:`~pyrovae.infer.distributed.shard_bounds`); a transform sees the whole
            global batch, so every rank draws what one process would. A last global batch
            with fewer rows than ranks is left out on every rank.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        transform: Transform | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if not tensors:
            raise ValueError("no tensors to batch")
        n = tensors[0].shape[0]
        for t in tensors[1:]:
            if t.shape[0] != n:
                raise ValueError(
                    "tensors must have the same number of rows; got "
                    f"{[t.shape[0] for t in tensors]}"
                )
        if n == 0:
            raise ValueError("the data has no examples (0 rows)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        device = tensors[0].device
        self.generator = generator or torch.Generator(device=device)
        self.transform = transform
        self.rank, self.ranks = shard

    @property
    def num_examples(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def global_batch_size(self) -> int:
        """Rows of one step over all ranks: ``ranks * batch_size``."""
        return self.batch_size * self.ranks

    def global_rows(self, step: int) -> int:
        """Rows of the ``step``-th global batch of a pass, over all ranks."""
        return min(self.global_batch_size, self.num_examples - step * self.global_batch_size)

    def __len__(self) -> int:
        steps = -(-self.num_examples // self.global_batch_size)
        return steps - (self.global_rows(steps - 1) < self.ranks)

    def _order(self) -> torch.Tensor | None:
        """The pass's order of the rows (None: as stored)."""
        if not self.shuffle:
            return None
        n = self.num_examples
        order = torch.randperm(n, generator=self.generator, device=self.generator.device)
        return order.to(self.tensors[0].device)

    def _finish(self, batch: Batch) -> Batch:
        """A batch as the programs receive it (a subclass may cut it)."""
        return batch

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        for step in range(len(self)):
            start = step * self.global_batch_size
            rows = self.global_rows(step)
            lo, hi = start, start + rows  # the global batch; this rank's share below
            if self.transform is None and self.ranks > 1:
                share = shard_bounds(rows, self.rank, self.ranks)
                lo, hi = start + share[0], start + share[1]
            index = order[lo:hi] if order is not None else slice(lo, hi)
            batch = tuple(t[index] for t in self.tensors)
            if self.transform is not None:
                batch = (self.transform(batch[0], self.generator), *batch[1:])
                if self.ranks > 1:
                    first, last = shard_bounds(rows, self.rank, self.ranks)
                    batch = tuple(t[first:last] for t in batch)
            yield self._finish(batch)

    def peek(self) -> Batch:
        """The first rows as one (transformed) batch, without advancing the generator."""
        batch = tuple(t[: self.batch_size] for t in self.tensors)
        if self.transform is not None:
            batch = (self.transform(batch[0], _copy(self.generator)), *batch[1:])
        return self._finish(batch)


class SequenceBatches(TensorBatches):
    """Batches of :class:`SequenceData`: ``(x[:, :S], lengths, *extra)``, grouped by length
    in pools of ``pool`` batches when shuffled, each cut to its bucket length S (see
    :class:`SequenceData`). The other arguments are :class:`TensorBatches`'s; under
    torch.distributed every rank cuts its own share of a global batch."""

    def __init__(
        self,
        data: SequenceData,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        transform: Transform | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(data.tensors, batch_size, shuffle, generator, transform, shard)
        self.pool = data.pool

    def _order(self) -> torch.Tensor | None:
        order = super()._order()
        if order is None or not self.pool:
            return order
        size, n = self.global_batch_size, self.num_examples
        lengths = self.tensors[1][order]
        # Whole pools at the end, the remainder first: the last pool's shortest rows make the
        # smaller last batch, whose shape then varies little from pass to pass.
        rest = n % (self.pool * size)
        sizes = ([rest] if rest else []) + [self.pool * size] * (n // (self.pool * size))
        pools = []
        for rows, pool_lengths in zip(order.split(sizes), lengths.split(sizes), strict=True):
            pools.append(rows[torch.sort(pool_lengths, descending=True, stable=True).indices])
        order = torch.cat(pools)
        full = n // size  # full global batches; a smaller last one stays last
        shuffled = torch.randperm(full, generator=self.generator, device=self.generator.device)
        blocks = order[: full * size].view(full, size)[shuffled.to(order.device)]
        return torch.cat([blocks.reshape(-1), order[full * size :]])

    def _finish(self, batch: Batch) -> Batch:
        x, lengths, *extra = batch
        steps = bucket_length(int(lengths.max()), x.shape[1])
        return (x[:, :steps], lengths, *extra)


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
            batch = (self.transform(batch[0], _copy(self.generator)), *batch[1:])
        return batch


def _copy(generator: torch.Generator) -> torch.Generator:
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return twin


def to_batch(item: Any) -> Batch:
    """A DataLoader item (a tensor or a list/tuple of tensors) as program arguments."""
    if isinstance(item, torch.Tensor):
        return (item,)
    if isinstance(item, (tuple, list)):
        return tuple(item)
    raise TypeError(
        f"a batch must be a tensor or a tuple of tensors (x, y), got {type(item).__name__}"
    )


def make_batches(
    data: Data,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    transform: Transform | None = None,
    device: torch.device | str | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterable[Batch]:
    """Turn any accepted form of data into an iterable of argument tuples; ``shard``
    (rank, ranks) cuts in-memory tensors and semi-supervised data over the ranks of
    torch.distributed (:class:`TensorBatches`, :class:`InterleavedBatches`).

    Raises:
        TypeError: the data are not in an accepted form.
        NotImplementedError: ``shard`` has more than one rank and the data are a Dataset
            (a DataLoader is passed through: its sampler shards).
    """
    if shard[1] > 1 and isinstance(data, Dataset):
        raise NotImplementedError(
            "under torch.distributed pyrovae shards in-memory tensors x (N, D) or (x, y) and "
            "SemiSupervisedData; a Dataset is not sharded. Pass the tensors, or a DataLoader "
            "with a torch.utils.data.DistributedSampler (it is used as it is)."
        )
    if isinstance(data, BatchSource):
        return data.batches(batch_size, shuffle, generator, transform, device, shard)
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in data):
        tensors = tuple(t.to(device) if device is not None else t for t in data)
        return TensorBatches(tensors, batch_size, shuffle, generator, transform, shard)
    if isinstance(data, DataLoader):
        return _Loader(data, transform, generator, device)
    if isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
        return _Loader(loader, transform, generator, device)
    raise TypeError(
        "data must be a tensor x of shape (N, D), a tuple of tensors (x, y), a torch Dataset, "
        "a DataLoader, or data with a batches() method (pyrovae.infer.BatchSource, e.g. "
        f"SemiSupervisedData or SequenceData); got {type(data).__name__}"
    )


class _Loader:
    """A DataLoader whose items become argument tuples on ``device``."""

    def __init__(
        self,
        loader: DataLoader,
        transform: Transform | None,
        generator: torch.Generator | None,
        device: torch.device | str | None,
    ) -> None:
        self.loader = loader
        self.transform = transform
        self.generator = generator or torch.Generator()
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for item in self.loader:
            batch = to_batch(item)
            if self.device is not None:
                batch = tuple(t.to(self.device) for t in batch)
            if self.transform is not None:
                batch = (self.transform(batch[0], self.generator), *batch[1:])
            yield batch

    def peek(self) -> Batch:
        """The first batch, without advancing the global or the transform's generator."""
        generator, self.generator = self.generator, _copy(self.generator)
        try:
            with torch.random.fork_rng(devices=[]):
                return next(iter(self))
        finally:
            self.generator = generator
