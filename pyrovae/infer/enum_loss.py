"""TraceEnum_ELBO's loss without a value read back to Python, so that it can be captured.

Pyro's :class:`~pyro.infer.TraceEnum_ELBO` computes, per particle, the Dice estimate

    ELBO = sum over cost terms c at ordinal t of  sum_i P_t(i) c(i)

where the model's enumerated sites are first summed out exactly (a tensor contraction of
their log-factors along the plates, ``contract_tensor_tree``), the costs are the model's
remaining log-densities and the guide's negated ones, and P_t is the Dice weight of the
guide's enumerated (or multiply sampled) sites upstream of t, computed as the marginal of
a sum-product contraction (``MarginalRing``). Where some P_t(i) is exactly 0, c(i) may be
-inf, and 0 * -inf would be NaN: Pyro drops those entries with ``masked_select`` after
checking ``mask.all()`` in Python, a data-dependent branch that stops a graph capture.

:func:`traceenum_elbo_loss` computes the same number with
``sum_i P(i) * where(P(i) > 0, c(i), 0)``: equal in value, and in gradient (both forms pass
no gradient to c where P is 0, and a zero one to P there), with the same tensor operations
on every call. Pyro's check that the sites it sums together share one scale reads each
scale back with ``float``; here that check is :func:`common_scale`, which compares Python
numbers as Pyro does and takes a tensor scale (the Trainer's KL warm-up weight) unread;
Pyro's own eager steps, which check a graph when it is captured and at every epoch, run
Pyro's check. Each particle is Pyro's own ``_compute_dice_elbo`` with those two swaps
(:func:`~pyrovae.infer.pyro_internals.compute_dice_elbo`): the traces, the enumeration, the
model-side contraction and the Dice factors are Pyro's code; the one copied method,
``Dice.compute_expectation``, is :class:`~pyrovae.infer.pyro_internals.BranchFreeDice`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import TraceEnum_ELBO

from .pyro_internals import BranchFreeDice, compute_dice_elbo, elbo_traces


def common_scale(scales: list) -> Any:
    """The one scale of the sites summed together, as Pyro's ``_get_common_scale`` without
    reading a tensor: numbers must be equal; tensor scales are taken as given (a tensor among
    numbers cannot be compared unread, and is refused: the loss then runs eagerly).

    Raises:
        ValueError: a scale with dimensions, unequal numbers, or numbers and tensors mixed.
    """
    tensors = [s for s in scales if isinstance(s, torch.Tensor)]
    if any(t.dim() for t in tensors):
        raise ValueError("enumeration only supports scalar poutine.scale")
    numbers = {float(s) for s in scales if not isinstance(s, torch.Tensor)}
    if len(numbers) > 1 or (numbers and tensors):
        raise ValueError(
            "Expected all enumerated sample sites to share a common poutine.scale, but found "
            f"{len(numbers)} different numbers and {len(tensors)} tensors"
        )
    return scales[0]


def dice_elbo(model_trace: Any, guide_trace: Any) -> torch.Tensor | float:
    """One particle's ELBO from packed traces: Pyro's own ``_compute_dice_elbo``, run with
    :class:`~pyrovae.infer.pyro_internals.BranchFreeDice` for its Dice and
    :func:`common_scale` for its check of the summed sites' scale."""
    return compute_dice_elbo(model_trace, guide_trace, check=common_scale, dice=BranchFreeDice)


def traceenum_elbo_loss(
    elbo: TraceEnum_ELBO, model: Callable, guide: Callable, *args: Any
) -> torch.Tensor:
    """-ELBO of ``elbo`` (a TraceEnum_ELBO) averaged over its particles: equal in value and
    gradient to ``elbo.differentiable_loss(model, guide, *args)``."""
    total: torch.Tensor | float = 0.0
    for model_trace, guide_trace in elbo_traces(elbo, model, guide, args):
        particle = dice_elbo(model_trace, guide_trace)
        if not is_identically_zero(particle):
            total = total + particle
    return -(total / elbo.num_particles)
