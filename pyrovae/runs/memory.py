"""Whether a model fits the machine, asked before it is built: ``--latent-dim 1e9``,
``--hidden 1e8``, ``--particles 1e9`` or ``--components 1e6`` (or a received run claiming
such sizes) is refused in one line instead of failing in PyTorch's allocator, or taking the
machine's memory for minutes first.

The pair is built once on PyTorch's ``meta`` device, which gives every parameter its shape
without allocating it; the estimate is then

    bytes = 4 * P * (4 when training: weights, gradients, Adam's two moments; 1 otherwise)
          + 4 * B * K * W * 3

with P the parameters, B the batch's rows, K the particles and W the summed output widths of
the pair's linear layers (each layer's activations, kept for the backward pass, and their
gradients), compared with the memory this process may still take
(:func:`available_memory`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..machine import available_memory
from .record import RunError

#: float32.
BYTES = 4


def pair_bytes(
    build: Callable[[], tuple[Callable, Callable]], rows: int, particles: int, training: bool
) -> tuple[int, int] | None:
    """(parameters, estimated bytes) of the pair ``build`` returns, built on the meta device
    (see the module docstring); None when it cannot be built there (a program that computes
    with its tensors while it is built), which leaves the question to the real build."""
    try:
        with torch.device("meta"):
            programs = build()
    except Exception:  # meta tensors refuse what needs values: no estimate, not an error
        return None
    modules = [p for p in programs if isinstance(p, torch.nn.Module)]
    params = sum(p.numel() for m in modules for p in m.parameters())
    widths = sum(
        layer.out_features
        for m in modules
        for layer in m.modules()
        if isinstance(layer, torch.nn.Linear)
    )
    weights = BYTES * params * (4 if training else 1)
    return params, weights + BYTES * rows * particles * widths * 3


def check_pair_memory(
    build: Callable[[], tuple[Callable, Callable]],
    *,
    rows: int,
    particles: int,
    training: bool,
    sizes: str,
) -> None:
    """Raise RunError when the pair ``build`` returns would not fit :func:`available_memory`
    (see :func:`pair_bytes`); ``sizes`` names the settings that set its size, for the fix."""
    estimate = pair_bytes(build, rows, particles, training)
    if estimate is None:
        return
    params, need = estimate
    have = available_memory()
    if need > have:
        raise RunError(
            f"{sizes}: the model has {params:,} parameters and would need about "
            f"{_gb(need)} of memory, more than the {_gb(have)} available here; choose smaller "
            "sizes"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n < 1e15 else f"10^{math.log10(n) - 9:.0f} GB"
