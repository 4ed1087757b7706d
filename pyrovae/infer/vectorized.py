"""Whether a (model, guide) pair runs its particles in one vectorized plate and gets each
particle's own weight (:func:`vectorizable`): the check behind sequential particles in
:func:`~pyrovae.infer.log_marginal` and the :class:`~pyrovae.infer.Trainer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from ..errors import user_stacklevel
from ..rng import aside
from .objectives import make_objective
from .pyro_internals import enumerate_dim
from .weights import log_weights_from_traces, trace_pair


def vectorizable(
    model: Callable,
    guide: Callable,
    args: tuple,
    nesting: int,
    proposal: str = "guide",
    data_plate: str | None = None,
    particles: int = 3,
) -> bool:
    """Whether the pair runs its particles in one vectorized plate (as
    ``vectorize_particles=True`` runs them in Pyro's ELBOs) *and gets each particle's own
    weight*: the vectorized pass must run, and each of its ``particles`` columns must equal
    the weight of the programs run alone (no particle plate) on that particle's draws. A
    program that indexes with plain ``locs[assignment]`` either fails in the plate or, where
    the shapes happen to broadcast, gives other numbers; both are caught. One pass, outside
    the caller's random streams."""
    proposal_program = guide if proposal == "guide" else None
    rows = args[0].shape[0]

    def weights(model_program, guide_program, count):
        model_trace, guide_trace = trace_pair(model_program, guide_program, args, count, nesting)
        lw, _ = log_weights_from_traces(
            model_trace, guide_trace, nesting, rows, allow_global=True, data_plate=data_plate
        )
        return lw, (guide_trace if guide_trace is not None else model_trace)

    with (
        aside(),
        pyro.validation_enabled(False),  # the data's own NaNs are the caller's to report
    ):
        try:
            together, drawn = weights(model, proposal_program, particles)
        except (IndexError, RuntimeError, ValueError):
            return False
        for particle in range(particles):
            chosen = _one_particle(
                drawn, particle, particles, nesting, of_guide=proposal_program is not None
            )
            if chosen is None:
                return True  # draws this check cannot slice (enumerated by the guide): trusted
            replayed_guide = None
            if proposal_program is not None:
                replayed_guide = poutine.replay(proposal_program, trace=chosen)
            try:
                alone, _ = weights(poutine.replay(model, trace=chosen), replayed_guide, 1)
            except (IndexError, RuntimeError, ValueError):
                return False
            if not torch.allclose(
                together[:, particle], alone[:, 0], rtol=1e-4, atol=1e-3, equal_nan=True
            ):
                return False
    return True


def _one_particle(
    trace: poutine.Trace, particle: int, particles: int, nesting: int, of_guide: bool
) -> poutine.Trace | None:
    """The draws of one particle of a vectorized trace, as a trace to replay without the
    particle plate (the particle dim selected away); None where the trace enumerates a site
    of its own program (a guide's enumerated class), which this slicing cannot replay."""
    chosen = poutine.Trace()
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if enumerate_dim(site) is not None:
            if of_guide:
                return None
            continue  # the model's own enumerated site: enumerated again when replayed
        value = site["value"]
        event_dim = getattr(site["fn"], "event_dim", 0)
        position = value.dim() - event_dim - (nesting + 1)
        if position >= 0:
            if value.shape[position] == particles:
                value = value.select(position, particle)
            elif value.shape[position] == 1:
                value = value.squeeze(position)
        chosen.add_node(name, **{**site, "value": value})
    return chosen


def particle_objective(
    objective: str | ELBO,
    num_particles: int,
    dreg: bool,
    model: Callable,
    guide: Callable,
    args: tuple,
    nesting: int,
    data_plate: str | None = None,
) -> ELBO:
    """The training ELBO of ``objective`` (a name, or an ELBO instance, returned as it is)
    with ``num_particles`` samples per example: in one vectorized particle plate where the
    program runs in one (:func:`vectorizable`, on the batch ``args``), else one particle after
    another, with a warning that says why the step is slower (and the refusal of
    :func:`~pyrovae.infer.objectives.make_objective` for the IWAE bound, which needs the
    plate)."""
    vectorize = True
    if num_particles > 1 and isinstance(objective, str):
        vectorize = vectorizable(model, guide, args, nesting, data_plate=data_plate)
        if not vectorize and objective != "iwae":
            warnings.warn(
                f"fit: the program cannot run its {num_particles} particles in one "
                "vectorized plate (it indexes or reshapes in a way a particle dimension "
                f"breaks), so each step runs them one at a time: {num_particles} passes "
                "per step instead of one. Index with pyro.ops.indexing.Vindex to vectorize",
                stacklevel=user_stacklevel(),
            )
    return make_objective(objective, num_particles, dreg, nesting, vectorize)
