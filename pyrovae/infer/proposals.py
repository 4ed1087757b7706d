"""Which per-example diagnostics an importance proposal admits, and why.

The estimate log p-hat = log (1/K) sum_k w_k comes with a delta-method standard error
sd(w) / (sqrt(K) mean(w)), the effective sample size 1 / sum_k wbar_k^2 and the Pareto k-hat
of the weights' tail. What they mean depends on what the proposal draws:

- ``"exact"``: nothing is drawn (every latent summed by enumeration, no global latent): the
  K weights are one number, the estimate is log p(x) itself, standard error 0 and ESS = K by
  construction, k-hat -inf (bounded weights, no tail).
- ``"continuous"``: every drawn latent has a continuous support: the weights have a
  continuous distribution and PSIS's generalized Pareto tail fit applies.
- ``"discrete"``: every drawn latent has a discrete support (a Bernoulli or Poisson guide):
  the weights take as many distinct values as the drawn latents do, with ties. PSIS fits a
  continuous tail and has no meaning there (a Poisson guide gave k-hat +inf on 98% of
  examples): k-hat is not applicable (NaN). Where all K draws tie, the sample standard
  error is 0 although q's other values were never drawn, so it is not defined (NaN) either:
  the estimate is off by the unseen values' mass, which the draws cannot bound. Enumerating
  the site (``infer={"enumerate": "parallel"}``) sums it exactly instead.
- ``"mixed"``: both kinds: the continuous draws make the weights continuous, and k-hat
  applies.

The ESS is defined for every kind; for a discrete proposal whose draws tie it counts copies
of one value and says nothing of the values not drawn.
"""

from __future__ import annotations

import math

import torch
from pyro import poutine

from .sites import WeightedSites

#: What a proposal draws, as :func:`proposal_kind` names it.
KINDS = ("exact", "continuous", "discrete", "mixed")

#: Why an exact estimate is exact (the summary's ``exact_why``).
EXACT_WHY = (
    "every latent is summed by enumeration and none is drawn, so the K weights are one "
    "number: log p(x) itself, standard error 0 by construction"
)
#: Why k-hat is not applicable to a discrete proposal (the summary's ``khat_not_applicable``).
KHAT_DISCRETE = (
    "not applicable: every latent the proposal draws is discrete, so the weights take few "
    "distinct values with ties and PSIS's continuous (generalized Pareto) tail fit has no "
    "meaning; enumerate the discrete latents (infer={'enumerate': 'parallel'}) for an exact sum"
)
#: Why a discrete proposal's tied weights have no standard error.
STDERR_TIED = (
    "all K weights are equal although the proposal draws discrete latents: every draw hit the "
    "same value, the sample standard error 0 ignores the values never drawn, so none is given "
    "(NaN); more draws or enumerating the site give one"
)


def proposal_kind(
    sites: WeightedSites,
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
) -> str:
    """One of :data:`KINDS` for a traced pair: what the proposal draws (the guide's draws,
    latents left to the model's prior, global latents), by the support of each site's
    distribution."""
    drawn = []
    for name in sites.drawn + sites.global_latents:
        trace = guide_trace if guide_trace is not None else model_trace
        drawn.append(trace.nodes[name]["fn"])
    drawn += [model_trace.nodes[name]["fn"] for name in sites.prior_drawn]
    if not drawn:
        return "exact"
    discrete = [bool(fn.support.is_discrete) for fn in drawn]
    if all(discrete):
        return "discrete"
    return "mixed" if any(discrete) else "continuous"


def honest_statistics(
    kind: str, log_weights: torch.Tensor, stderr: torch.Tensor, khat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The standard error and k-hat (each (B,)) of log weights (B, K) made honest for the
    proposal ``kind``: for a discrete proposal k-hat NaN (not applicable) and the standard
    error NaN where every weight ties; otherwise unchanged."""
    if kind != "discrete":
        return stderr, khat
    tied = (log_weights == log_weights[..., :1]).all(-1).to(stderr.device)
    stderr = torch.where(tied, math.nan, stderr)
    return stderr, torch.full_like(khat, math.nan)


__all__ = [
    "EXACT_WHY",
    "KHAT_DISCRETE",
    "KINDS",
    "STDERR_TIED",
    "honest_statistics",
    "proposal_kind",
]
