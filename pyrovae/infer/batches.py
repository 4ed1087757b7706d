"""Where data becomes the program's arguments: minibatches as tuples ``(x,)`` or ``(x, y)``.

Tensors that fit in memory are cut into batches by index (:class:`TensorBatches`, no
per-item DataLoader); a user's Dataset or DataLoader passes through torch's own machinery;
data that cut themselves into batches (a :class:`BatchSource`: a model family's container,
such as the partly labelled rows and the padded sequences of :mod:`pyrovae.data`) are asked
for their batches. Nothing here knows a model family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

from .distributed import shard_bounds

Batch = tuple[torch.Tensor, ...]

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
#: DataLoader, or a :class:`BatchSource` (:class:`~pyrovae.data.SemiSupervisedData`,
#: :class:`~pyrovae.data.SequenceData`).
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
            batch = (self.transform(batch[0], copy_generator(self.generator)), *batch[1:])
        return self._finish(batch)


def copy_generator(generator: torch.Generator) -> torch.Generator:
    """A new generator on ``generator``'s device in its state: it draws what ``generator``
    would, and drawing from it leaves ``generator`` where it was (a batcher's ``peek``)."""
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
    (rank, ranks) cuts in-memory tensors over the ranks of torch.distributed
    (:class:`TensorBatches`), and a :class:`BatchSource` cuts its own batches (the
    semi-supervised data's :class:`~pyrovae.data.semisupervised.InterleavedBatches`).

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
        f"pyrovae.data.SemiSupervisedData or SequenceData); got {type(data).__name__}"
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
        generator, self.generator = self.generator, copy_generator(self.generator)
        try:
            with torch.random.fork_rng(devices=[]):
                return next(iter(self))
        finally:
            self.generator = generator


def count_rows(data: Data) -> int | None:
    """N, the rows of ``data`` where they can be counted."""
    if isinstance(data, torch.Tensor):
        return data.shape[0]
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor):
        return data[0].shape[0]
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None
