"""Which process this is among torch.distributed's ranks, and how rows are shared among them.

The few facts about a process group that both the models (the mixture's EM) and inference
(training, ``log_marginal``) need, in one place that either layer may import: this rank and
the group's size, each rank's contiguous share of N rows, and a number every rank takes from
rank 0. Without an initialised group, every function answers as the only process would.
"""

from __future__ import annotations

import torch


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s share of ``rows`` split over ``size`` ranks in order:
    contiguous shares whose sizes differ by at most one (the first ``rows % size`` ranks
    take one more)."""
    base, extra = divmod(rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def collective_device() -> str:
    """Where the group's collectives take their tensors: ``cuda`` under NCCL, else ``cpu``."""
    return "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"


def shared_seed(seed: int) -> int:
    """Rank 0's ``seed`` on every rank (a broadcast); ``seed`` itself without a group."""
    if world()[1] == 1:
        return seed
    value = torch.tensor([seed], dtype=torch.int64, device=collective_device())
    torch.distributed.broadcast(value, 0)
    return int(value.item())


__all__ = ["collective_device", "shard_bounds", "shared_seed", "world"]
