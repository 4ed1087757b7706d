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
scale back with ``float``; :func:`model_factors` runs Pyro's own ``_compute_model_factors``
with that check done by :func:`common_scale`, which compares Python numbers as Pyro does and
takes a tensor scale (the Trainer's KL warm-up weight) unread; Pyro's own eager steps, which
check a graph when it is captured and at every epoch, run Pyro's check. Everything else (the
traces, the enumeration, the model-side contraction and the Dice factors) is Pyro's own code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from opt_einsum import shared_intermediates
from pyro.distributions.util import is_identically_zero
from pyro.infer import TraceEnum_ELBO, traceenum_elbo
from pyro.infer.util import Dice, _fulldot
from pyro.ops import packed
from pyro.ops.contract import contract_tensor_tree
from pyro.ops.einsum.adjoint import require_backward
from pyro.ops.rings import MarginalRing, SampleRing


class BranchFreeDice(Dice):
    """Pyro's :class:`~pyro.infer.util.Dice` whose expectation reads no value back."""

    def compute_expectation(self, costs: dict) -> torch.Tensor | float:
        """sum over ordinals t and cost terms c of sum_i P_t(i) c(i), with 0 where P_t = 0."""
        with shared_intermediates() as cache:
            ring = MarginalRing(cache=cache)
            expected_cost: torch.Tensor | float = 0.0
            for ordinal, cost_terms in costs.items():
                log_factors = self._get_log_factors(ordinal)
                scale = math.exp(sum(x for x in log_factors if not isinstance(x, torch.Tensor)))
                log_factors = [x for x in log_factors if isinstance(x, torch.Tensor)]

                # One marginal query per set of dims that a cost term has (as Pyro's Dice).
                queries: dict[frozenset, Any] = {
                    frozenset(cost._pyro_dims): None for cost in cost_terms
                }
                for log_factor in log_factors:
                    key = frozenset(log_factor._pyro_dims)
                    if queries.get(key, False) is None:
                        queries[key] = log_factor
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    if queries[key] is None:
                        query = torch.zeros_like(cost)
                        query._pyro_dims = cost._pyro_dims
                        log_factors.append(query)
                        queries[key] = query

                sum_dims = set().union(*(x._pyro_dims for x in log_factors)) - ordinal
                for query in queries.values():
                    require_backward(query)
                root = ring.sumproduct(log_factors, sum_dims)
                root._pyro_backward()
                probs = {key: query._pyro_backward_result.exp() for key, query in queries.items()}

                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    prob = probs[key]
                    prob._pyro_dims = queries[key]._pyro_dims
                    cost, prob = packed.broadcast_all(cost, prob)
                    cost = torch.where(prob > 0, cost, cost.new_zeros(()))
                    expected_cost = expected_cost + scale * _fulldot(prob, cost)
        return expected_cost


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


@contextmanager
def _scales_taken_unread() -> Iterator[None]:
    """Pyro's ``_get_common_scale`` replaced by :func:`common_scale` while the block runs."""
    original = traceenum_elbo._get_common_scale
    traceenum_elbo._get_common_scale = common_scale
    try:
        yield
    finally:
        traceenum_elbo._get_common_scale = original


def model_factors(model_trace: Any, guide_trace: Any) -> tuple:
    """Pyro's own ``_compute_model_factors`` (marginal costs, log-factors of the sites to sum
    out, ordinals, the dims to sum, their scale), its check of the sites' common scale done
    by :func:`common_scale`, which reads no tensor."""
    with _scales_taken_unread():
        return traceenum_elbo._compute_model_factors(model_trace, guide_trace)


def dice_elbo(model_trace: Any, guide_trace: Any) -> torch.Tensor | float:
    """One particle's ELBO from packed traces: Pyro's ``_compute_dice_elbo`` with
    :class:`BranchFreeDice`."""
    marginal_costs, log_factors, ordering, sum_dims, scale = model_factors(model_trace, guide_trace)
    if log_factors:
        dim_to_size: dict = {}
        for terms in log_factors.values():
            for term in terms:
                dim_to_size.update(zip(term._pyro_dims, term.shape, strict=True))
        with shared_intermediates() as cache:
            ring = SampleRing(cache=cache, dim_to_size=dim_to_size)
            log_factors = contract_tensor_tree(log_factors, sum_dims, ring=ring)
        for t, log_factors_t in log_factors.items():
            marginal_costs_t = marginal_costs.setdefault(t, [])
            for term in log_factors_t:
                marginal_costs_t.append(packed.scale_and_mask(term, scale=scale))
    costs = marginal_costs
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample":
            costs.setdefault(ordering[name], []).append(packed.neg(site["packed"]["log_prob"]))
    return BranchFreeDice(guide_trace, ordering).compute_expectation(costs)


def traceenum_elbo_loss(
    elbo: TraceEnum_ELBO, model: Callable, guide: Callable, *args: Any
) -> torch.Tensor:
    """-ELBO of ``elbo`` (a TraceEnum_ELBO) averaged over its particles: equal in value and
    gradient to ``elbo.differentiable_loss(model, guide, *args)``."""
    total: torch.Tensor | float = 0.0
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, {}):
        particle = dice_elbo(model_trace, guide_trace)
        if not is_identically_zero(particle):
            total = total + particle
    return -(total / elbo.num_particles)
