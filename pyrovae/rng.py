"""RNG helpers: what a caller must save to draw randomness without disturbing anyone's stream.

Estimates that trace a program once to inspect it (plate depth, site kinds, parameters)
fork torch's random state around the trace, so that inspecting changes no draw that follows
(:func:`aside`). This module imports nothing from pyrovae, so anything may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from pyro import poutine


def initialised_cuda_devices() -> list[int]:
    """Devices whose RNG a fork must save: only those CUDA has already initialised.

    ``torch.random.fork_rng(devices=initialised_cuda_devices())`` saves and restores the CPU
    generator and those devices' generators, without initialising CUDA on a machine (or in a
    process) that has not used it.
    """
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


@contextmanager
def aside(*, grad: bool = False) -> Iterator[None]:
    """Run a probe of a program (one trace to read its plates, sites or parameters) off the
    record: torch's random streams, CPU and initialised CUDA
    (:func:`initialised_cuda_devices`), are restored afterwards, so that probing changes no
    draw that follows; every Pyro effect is blocked (``poutine.block()``: a trace or an
    enumeration the caller is inside does not see the probe's sites); and, unless ``grad``,
    no autograd graph is built (``torch.no_grad()``)."""
    with ExitStack() as stack:
        if not grad:
            stack.enter_context(torch.no_grad())
        stack.enter_context(torch.random.fork_rng(devices=initialised_cuda_devices()))
        stack.enter_context(poutine.block())
        yield


__all__ = ["aside", "initialised_cuda_devices"]
