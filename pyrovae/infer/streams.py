"""The random streams a Trainer saves and restores, so that a resumed run draws what an
uninterrupted one would have: torch's CPU generator, CUDA's where initialised, and the
generator that orders the data; under torch.distributed, every rank's.
"""

from __future__ import annotations

from typing import Any

import torch


def random_streams(generator: torch.Generator) -> dict[str, Any]:
    """This process's streams: ``torch`` (the CPU generator's state), ``data``
    (``generator``'s) and, where CUDA is initialised, ``cuda`` (every device's)."""
    rng = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def gather_streams(generator: torch.Generator, ranks: int) -> list[dict[str, Any]]:
    """Every rank's :func:`random_streams`, rank r's at index r (a collective: every one of
    the ``ranks`` ranks calls it, at an epoch's end)."""
    streams: list[Any] = [None] * ranks
    torch.distributed.all_gather_object(streams, random_streams(generator))
    return streams


def restore_streams(
    rng: dict[str, Any], generator: torch.Generator, rank: int = 0, ranks: int = 1
) -> None:
    """Set the streams :func:`random_streams` saved (and ``ranks``, the per-rank ones
    :func:`gather_streams` saved, where the run had as many ranks: rank ``rank`` continues
    its own). Saved under another number of ranks, each rank draws a distinct stream derived
    from the saved one."""
    streams = rng.get("ranks")
    if ranks > 1 and streams is not None and len(streams) == ranks:
        rng = {**rng, **streams[rank]}  # this rank's own noise stream continues
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["data"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if ranks > 1 and (streams is None or len(streams) != ranks):
        # Saved under another number of ranks: distinct streams derived from the saved one.
        torch.manual_seed(int(torch.randint(2**62, ())) + rank)
