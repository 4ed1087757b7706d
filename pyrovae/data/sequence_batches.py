"""Padded sequences batched by length: :class:`SequenceData` (sequences x (N, T, ...) with
their lengths) and its batches grouped by length and cut to a few bucket lengths
(:class:`SequenceBatches`, :func:`bucket_length`), for the sequence models (``SequenceVAE``,
``DeepMarkovModel``) and any program that masks the steps past each length.

:class:`SequenceData` is a :class:`~pyrovae.infer.batches.BatchSource`: the generic fitting
code (:func:`pyrovae.fit`, :class:`~pyrovae.infer.Trainer`) takes it as it takes tensors,
without knowing the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..infer.batches import Batch, TensorBatches, Transform

__all__ = ["SequenceBatches", "SequenceData", "bucket_length"]


@dataclass
class SequenceData:
    """Padded sequences x (N, T, ...) with their lengths (N,) int64 in [1, T], and optional
    per-sequence tensors ``extra`` (N, ...) (e.g. labels), batched by length.

    A training batch is ``(x[:, :S], lengths, *extra)``: cut to S, the first of the bucket
    lengths 8, 16, 24, 32, 40, 56, 72, 96, ... (each a multiple of 8 about 1.25 times the
    last; T for the last) that holds its longest sequence
    (:func:`~pyrovae.data.sequence_batches.bucket_length`). A program that masks the steps
    past each length (pyrovae's sequence models do) has the same loss on the cut batch as on
    the padded one, for the work of S steps instead of T; the few bucket lengths keep the
    batch shapes, each captured once (:class:`~pyrovae.infer.captured.CapturedLoss`), few. A
    program that reads the padding must not be given its data in this form.

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
        (:class:`~pyrovae.data.sequence_batches.SequenceBatches`)."""
        return SequenceBatches(self.to(device), batch_size, shuffle, generator, transform, shard)


def bucket_length(longest: int, steps: int) -> int:
    """The first bucket length 8, 16, 24, 32, 40, 56, 72, ... (each the multiple of 8 at or
    above 1.25 times the last) at least ``longest``; ``steps`` (T) where the bucket after
    that one would pass T, so the longest batches share one shape.

    Example:
        >>> from pyrovae.data.sequence_batches import bucket_length
        >>> [bucket_length(n, steps=200) for n in (3, 8, 9, 33, 100, 190)]
        [8, 8, 16, 40, 120, 200]
    """
    bucket = 8
    while bucket < longest:
        bucket = _next_bucket(bucket)
    return steps if _next_bucket(bucket) >= steps else bucket


def _next_bucket(bucket: int) -> int:
    return 8 * -(-(bucket * 5) // 32)  # ceil(1.25 * bucket / 8) * 8


class SequenceBatches(TensorBatches):
    """Batches of :class:`SequenceData`: ``(x[:, :S], lengths, *extra)``, grouped by length
    in pools of ``pool`` batches when shuffled, each cut to its bucket length S (see
    :class:`SequenceData`). The other arguments are
    :class:`~pyrovae.infer.batches.TensorBatches`'s; under
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
