"""The importance-weighted bound as a training objective (IWAE).

For each example, with K reparameterised draws z_k ~ q(z | x) and log weights
log w_k = log p(x, z_k) - log q(z_k | x),

    L_K(x) = E[ log (1/K) sum_k w_k ]  <=  log p(x),

which equals the ELBO for K = 1 and increases with K (Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders", ICLR 2016). The loss is -sum_n L_K(x_n), one
bound per example (Pyro's RenyiELBO gives a per-example bound only in special cases
and has no ``differentiable_loss``).

With ``dreg=True`` the guide's gradient is the doubly reparameterised estimator
(Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient Estimators for Monte
Carlo Objectives", ICLR 2019): sum_k wbar_k^2 d log w_k / d z_k * d z_k / d phi, with
log q evaluated at parameters held fixed, which removes the score-function term whose
variance grows with K. The model's gradient is the usual sum_k wbar_k grad log p(x, z_k).
DReG needs every guide site reparameterised; the guide may keep its parameters anywhere (a
module, Pyro's param store): log q at fixed parameters comes from a replay of the guide
without gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.poutine.util import prune_subsample_sites

from .loss_from_differentiable import LossFromDifferentiableLoss
from .passes import log_importance_weights, plate_nesting
from .plates import PARTICLES
from .weights import log_weights_from_traces


class IWAE_ELBO(LossFromDifferentiableLoss, ELBO):  # noqa: N801 - named like Pyro's Trace_ELBO, TraceEnum_ELBO
    """-sum_n L_K(x_n), the importance-weighted bound with K = ``num_particles``; see module.

    Works with :func:`pyrovae.fit` (``objective="iwae"``) and with ``pyro.infer.SVI``.
    """

    def __init__(self, num_particles: int = 5, dreg: bool = False) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        super().__init__(num_particles=num_particles, vectorize_particles=True)
        self.dreg = dreg
        self._nesting: int | None = None

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("IWAE_ELBO weighs all particles in one vectorized pass")

    def _nesting_for(self, model: Callable, guide: Callable, args: tuple) -> int:
        if self._nesting is None:
            self._nesting = plate_nesting(model, guide, args)
        return self._nesting

    def per_example(self, model: Callable, guide: Callable, *args) -> torch.Tensor:
        """The bound's one-sample estimate for each example, (B,), differentiable."""
        k = self.num_particles
        lw = log_importance_weights(
            model, guide, args, k, self._nesting_for(model, guide, args), scaled=True
        )
        return torch.logsumexp(lw, -1) - math.log(k)

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """Minus the IWAE bound summed over the data plate, log (1/K) sum_k w_k per
        example, K = ``num_particles`` (its DReG surrogate with ``dreg``); differentiable."""
        if kwargs:
            raise TypeError("IWAE_ELBO passes positional arguments only to model and guide")
        if self.dreg:
            return self._dreg_loss(model, guide, args)
        return -self.per_example(model, guide, *args).sum()

    def _dreg_loss(self, model: Callable, guide: Callable, args: tuple) -> torch.Tensor:
        """A surrogate whose value is the IWAE loss and whose gradient is DReG's."""
        k = self.num_particles
        particle_dim = -(self._nesting_for(model, guide, args) + 1)
        plate = pyro.plate(PARTICLES, k, dim=particle_dim)
        guide_trace = prune_subsample_sites(poutine.trace(plate(guide)).get_trace(*args))
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not getattr(site["fn"], "has_rsample", False):
                raise ValueError(
                    f"dreg=True needs reparameterised guide sites, and {name!r} is not "
                    "(its distribution has no rsample): train with dreg=False"
                )

        def log_weights(trace: poutine.Trace) -> torch.Tensor:
            """log p(x, z) - log q_{fixed phi}(z | x) at the draws in ``trace``: (B, K). The
            guide reruns without gradients, so its distributions' parameters are constants
            (phi fixed, wherever the guide keeps its parameters: a module or Pyro's store)
            and log q keeps only its gradient through the draws z."""
            with torch.no_grad():
                q = poutine.trace(poutine.replay(plate(guide), trace=trace)).get_trace(*args)
            p = poutine.trace(poutine.replay(plate(model), trace=trace)).get_trace(*args)
            q, p = prune_subsample_sites(q), prune_subsample_sites(p)
            lw, sites = log_weights_from_traces(
                p, q, -particle_dim - 1, args[0].shape[0], scaled=True
            )
            if sites.enumerated or sites.prior_drawn:
                raise ValueError(
                    "dreg=True needs every latent site drawn by the guide by "
                    "reparameterisation; the model has sites the guide does not draw "
                    f"({sites.enumerated + sites.prior_drawn}): train with dreg=False"
                )
            return lw

        detached = guide_trace.copy()  # shallow: give each site its own dict
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample":
                detached.nodes[name] = {**site, "value": site["value"].detach()}
        lw_z = log_weights(guide_trace)  # gradient to phi only through z
        lw_fixed_z = log_weights(detached)  # gradient to theta only
        w = torch.softmax(lw_z.detach(), dim=-1)
        surrogate = (w * lw_fixed_z).sum() + (w.pow(2) * (lw_z - lw_fixed_z)).sum()
        value = (torch.logsumexp(lw_z.detach(), -1) - math.log(k)).sum()
        return -(value + surrogate - surrogate.detach())
