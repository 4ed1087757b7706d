"""One pass of importance weights: K particles of a batch drawn from the proposal and
weighed, with enumerated sites summed (:func:`log_importance_weights`, :func:`weighted_pass`),
the plate nesting the particle plate sits left of (:func:`plate_nesting`), and the size of a
pass (:func:`default_max_elements`, :func:`enumerated_size`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine

from ..rng import aside
from .plates import named_data_plate
from .sites import WeightedSites
from .weights import enumerated_values, log_weights_from_traces, trace_pair

PROPOSALS = ("guide", "prior")


def default_max_elements(device: torch.device | str | None = None) -> int:
    """Numbers per vectorized pass of :func:`~pyrovae.infer.log_marginal`: 2**21 (8 MB of
    float32) on a CPU, where a pass that stays in cache is fastest (K = 5000 on a 784-400-50
    VAE: 4.7 s per 200 images against 11.6 s at 2**26, ``benchmarks/svi_step.py
    --eval-images``), and 2**26 on a GPU, where larger passes keep it busy."""
    return 2**26 if torch.device(device or "cpu").type == "cuda" else 2**21


def plate_nesting(model: Callable, guide: Callable, args: tuple) -> int:
    """How many plates deep the programs go (as Pyro's ELBOs guess it); draws no randomness
    from the caller's streams."""
    with aside(grad=True):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    return traced_nesting(model_trace, guide_trace)


def traced_nesting(*traces: poutine.Trace) -> int:
    """How many plates deep the sample sites of these traces go (max -frame.dim)."""
    dims = [
        -frame.dim
        for trace in traces
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


def log_importance_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
    *,
    data_plate: str | None = None,
    scaled: bool = False,
) -> torch.Tensor:
    """log w = log p(x, z) - log r(z | x) for ``particles`` draws per example: (B, particles),
    with enumerated sites summed exactly (:mod:`pyrovae.infer.weights`).

    One vectorized pass: both programs run inside a particle plate left of their own
    plates (``nesting`` deep; traced once when not given), or without one for one particle.
    Differentiable (reparameterised draws), so the IWAE objective is built on it.
    ``allow_global`` conditions on global latents instead of refusing them (the weights then
    estimate the posterior predictive). ``data_plate`` names the data plate (found when
    None); ``scaled`` keeps the sites' scales (a training objective), else the weights are of
    the unscaled model (per-example numbers).
    """
    return weighted_pass(
        model,
        guide,
        args,
        particles,
        nesting,
        proposal,
        allow_global,
        data_plate=data_plate,
        scaled=scaled,
    )[0]


def importance_pass(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
) -> tuple[torch.Tensor, poutine.Trace]:
    """:func:`log_importance_weights` and the trace that holds the draws z (the guide's, or
    the model's under the prior proposal); a site's draws are (particles, B, ...), a particle
    plate even for one particle."""
    return weighted_pass(
        model, guide, args, particles, nesting, proposal, allow_global, particle_plate=True
    )[:2]


def weighted_pass(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
    *,
    data_plate: str | None = None,
    scaled: bool = False,
    particle_plate: bool | None = None,
) -> tuple[torch.Tensor, poutine.Trace, WeightedSites]:
    """:func:`importance_pass` and how each site entered the weights."""
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if nesting is None:
        nesting = plate_nesting(model, guide, args)
    model_trace, guide_trace = trace_pair(
        model, guide if proposal == "guide" else None, args, particles, nesting, particle_plate
    )
    lw, sites = log_weights_from_traces(
        model_trace,
        guide_trace,
        nesting,
        args[0].shape[0],
        allow_global=allow_global,
        data_plate=named_data_plate(model, data_plate),
        scaled=scaled,
    )
    return lw, guide_trace if guide_trace is not None else model_trace, sites


def enumerated_size(
    model: Callable, guide: Callable, args: tuple, nesting: int, proposal: str = "guide"
) -> int:
    """How many values the enumerated sites hold at once (1 without any, C for the class of
    the semi-supervised VAE): a pass of :func:`log_importance_weights` holds that many
    copies of its activations. One draw, without gradients or the caller's random streams."""
    with aside():
        model_trace, guide_trace = trace_pair(
            model, guide if proposal == "guide" else None, args, 1, nesting
        )
    return enumerated_values(model_trace, guide_trace, nesting)
