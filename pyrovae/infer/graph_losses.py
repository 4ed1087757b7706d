"""The ELBOs' losses written without a value read back to Python, so that they can be captured.

:class:`~pyrovae.infer.captured.CapturedLoss` records a loss as a graph of tensor operations;
Pyro's own ``differentiable_loss`` reads log-densities back with ``.item()`` and branches on
them, which stops a capture. Each function here computes the same number and gradient as the
named Pyro loss, from Pyro's own traces (:func:`~pyrovae.infer.pyro_internals.elbo_traces`,
``ELBO._get_traces``):

- :func:`trace_elbo_loss` equals ``Trace_ELBO.differentiable_loss`` for a reparameterised
  guide: -(1/S) sum_s [sum_model log p - sum_guide log q];
- :func:`meanfield_elbo_loss` equals ``TraceMeanField_ELBO.differentiable_loss``: KL(q || p)
  in closed form where torch registers the pair;
- TraceEnum_ELBO's is :func:`~pyrovae.infer.enum_loss.traceenum_elbo_loss`.

:func:`loss_function` picks the one for an ELBO. Tests compare each with Pyro's loss and its
gradients (``tests/infer/test_graph_losses.py``, and through the captured graph
``tests/infer/test_captured.py`` and ``tests/infer/test_captured_enum.py``); the captured
graph is in any case used only after it matches Pyro's eager loss.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from .enum_loss import traceenum_elbo_loss
from .pyro_internals import elbo_traces


class NotCapturable(RuntimeError):
    """The loss of this (model, guide, ELBO) cannot be replayed from a captured graph."""


def trace_elbo_loss(elbo: ELBO, model: Callable, guide: Callable, *args: Any) -> torch.Tensor:
    """-ELBO of Trace_ELBO for a reparameterised guide, without reading values back.

    Per particle: -(sum over model sites of log p - sum over guide sites of log q), each
    site's log-density scaled and masked as Pyro scores it; the particles are averaged.
    Equal in value and gradient to ``Trace_ELBO.differentiable_loss`` when every guide
    site is reparameterised (its surrogate then has no score-function term).
    """
    loss = 0.0
    for model_trace, guide_trace in elbo_traces(elbo, model, guide, args):
        elbo_particle = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo_particle = elbo_particle + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                _check_reparameterised(site)
                elbo_particle = elbo_particle - site["log_prob_sum"]
        loss = loss - elbo_particle / elbo.num_particles
    return loss


def meanfield_elbo_loss(elbo: ELBO, model: Callable, guide: Callable, *args: Any) -> torch.Tensor:
    """-ELBO of TraceMeanField_ELBO: KL(q || p) in closed form where torch knows the pair.

    Per particle: sum over observed sites of log p(x | z) - sum over latent sites of
    KL(q(z) || p(z)) (or the one-sample log p(z) - log q(z) where no closed form is
    registered), minus log q of auxiliary guide sites; the particles are averaged.
    """
    loss = 0.0
    for model_trace, guide_trace in elbo_traces(elbo, model, guide, args):
        elbo_particle = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                elbo_particle = elbo_particle + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            _check_reparameterised(guide_site)
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:
                entropy = guide_site["score_parts"].entropy_term
                elbo_particle = elbo_particle + site["log_prob_sum"] - entropy.sum()
                continue
            kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
            elbo_particle = elbo_particle - kl.sum()
        for name, guide_site in guide_trace.nodes.items():
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                _check_reparameterised(guide_site)
                elbo_particle = elbo_particle - guide_site["score_parts"].entropy_term.sum()
        loss = loss - elbo_particle / elbo.num_particles
    return loss


def _check_reparameterised(site: dict) -> None:
    if not is_identically_zero(site["score_parts"].score_function):
        raise NotCapturable(
            f"guide site {site['name']!r} is not reparameterised (score-function gradient)"
        )


#: Pyro's ELBOs whose loss is captured from its parts, most derived first, with the function
#: that computes it without reading values back.
CAPTURED_ELBOS: tuple[tuple[type, Callable[..., torch.Tensor]], ...] = (
    (TraceEnum_ELBO, traceenum_elbo_loss),
    (TraceMeanField_ELBO, meanfield_elbo_loss),
    (Trace_ELBO, trace_elbo_loss),
)


def loss_function(elbo: ELBO) -> Callable[..., torch.Tensor]:
    """``loss(model, guide, *args)`` to capture for this ELBO (see the module docstring).

    Trace_ELBO, TraceMeanField_ELBO and TraceEnum_ELBO are captured from their parts. A
    subclass of one of them that adds terms to its loss is captured too when it defines
    ``objective(base_loss, model, guide, *args)``: its loss given a function that computes
    the base class's -ELBO (its ``differentiable_loss`` is then ``self.objective(
    super().differentiable_loss, model, guide, *args)``; the semi-supervised ELBO is one).
    Any other ELBO runs its own ``differentiable_loss``. Either way a graph is used only
    after it matches Pyro's eager loss (:class:`~pyrovae.infer.captured.CapturedLoss`).
    """
    for kind, loss in CAPTURED_ELBOS:
        if type(elbo) is kind:
            return partial(loss, elbo)
    objective = getattr(elbo, "objective", None)
    if callable(objective):
        for kind, loss in CAPTURED_ELBOS:
            if isinstance(elbo, kind):
                base = partial(loss, elbo)
                return lambda model, guide, *args: objective(base, model, guide, *args)
    return elbo.differentiable_loss
