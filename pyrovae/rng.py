"""RNG helpers: what a caller must save to draw randomness without disturbing anyone's stream.

Estimates that trace a program once to inspect it (plate depth, site kinds, parameters)
fork torch's random state around the trace, so that inspecting changes no draw that follows.
This module imports nothing from pyrovae, so anything may import it.
"""

from __future__ import annotations

import torch


def initialised_cuda_devices() -> list[int]:
    """Devices whose RNG a fork must save: only those CUDA has already initialised.

    ``torch.random.fork_rng(devices=initialised_cuda_devices())`` saves and restores the CPU
    generator and those devices' generators, without initialising CUDA on a machine (or in a
    process) that has not used it.
    """
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


__all__ = ["initialised_cuda_devices"]
