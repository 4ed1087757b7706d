"""The ELBO's two terms per example: how well x is reconstructed, and what the code costs.

For a pair whose guide draws every latent the model samples (no enumerated sites) the ELBO
of example n splits as

    ELBO_n = E_q[log p(x_n | z)] - E_q[log q(z | x_n) - log p(z)]
           =   reconstruction_n  -              KL_n

with log p(x_n | z) the model's density of every site it observes (masks applied: a padded
step counts nothing) and the KL the guide's over the model's density of every latent site
it draws, summed over the example's plates and steps (the deep Markov model's
sum_t KL(q(z_t | z_{t-1}, x) || p(z_t | z_{t-1})) in expectation). Both are estimated from
the same K draws z_k ~ q(z | x_n), averaged: unbiased, and reconstruction - KL is the usual
K-draw ELBO estimate. A KL near zero says the model ignores its code (posterior collapse).

Both are of the unscaled model (``poutine.scale`` and subsampled plates are training devices:
:mod:`pyrovae.infer.subsample`), the data plate found whatever its name
(:func:`~pyrovae.infer.plates.find_data_plate`). With a point-mass guide (``dist.Delta``,
``AutoDelta``, the ``ae`` recipe's encoder) q's density is 0 at its point, so
reconstruction - KL is log p(x, z*) at the guide's code z*: the joint at a point, not a bound.

Refused, with the reason: programs with enumerated sites (log sum_e p(x, e | z) does not
split into a reconstruction and a KL term) and global latents (their KL is shared by every
example). A latent the guide leaves to the model's prior enters neither term (its draw is
its own proposal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .batches import Data, make_batches
from .modes import evaluated
from .passes import plate_nesting
from .plates import data_plate_dim, find_data_plate, named_data_plate, retracer
from .sites import classify_sites
from .weights import log_density, per_example_sum, trace_pair


@dataclass(frozen=True)
class ElboTerms:
    """Per-example estimates, each (N,): ``reconstruction`` E_q[log p(x | z)] and ``kl``
    E_q[log q(z | x) - log p(z)], in nats; ``elbo`` is their difference."""

    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl


@evaluated
@torch.no_grad()
def elbo_terms(
    model: Callable,
    guide: Callable,
    data: Data,
    *,
    num_samples: int = 1,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    nesting: int | None = None,
    data_plate: str | None = None,
) -> ElboTerms:
    """The reconstruction and KL terms of every example of ``data`` (see the module
    docstring), from ``num_samples`` draws of the guide each, with the pair's modules in
    evaluation mode. ``nesting``: the programs' plate nesting
    (:func:`~pyrovae.infer.passes.plate_nesting`, found by running them once when None;
    a caller that evaluates the same pair often passes it).

    Raises:
        ValueError: the program enumerates a site, or has a global latent.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    reconstructions, kls = [], []
    for args in make_batches(data, batch_size, shuffle=False, device=device):
        if nesting is None:
            nesting = plate_nesting(model, guide, args)
        model_trace, guide_trace = trace_pair(model, guide, args, num_samples, nesting)
        named = named_data_plate(model, data_plate)
        plate = find_data_plate(model_trace, args[0].shape[0], named, retracer(model, args))
        sites = classify_sites(model_trace, guide_trace, allow_global=False, plate=plate)
        if sites.enumerated:
            raise ValueError(
                f"the program enumerates {sites.enumerated}: its ELBO holds log sum_e p(x, e | z), "
                "which does not split into a reconstruction and a KL term"
            )
        reconstruction, kl = _terms(model_trace, guide_trace, sites, nesting)
        shape = (num_samples, args[0].shape[0])
        reconstruction = torch.as_tensor(reconstruction, device=args[0].device).expand(shape)
        kl = torch.as_tensor(kl, device=args[0].device).expand(shape)
        reconstructions.append(reconstruction.mean(0))
        kls.append(kl.mean(0))
    if not reconstructions:
        raise ValueError("no examples to evaluate")
    return ElboTerms(torch.cat(reconstructions).cpu(), torch.cat(kls).cpu())


def _terms(model_trace, guide_trace, sites, nesting: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction and KL of every draw and example of a traced pair, each (K, B) or
    (K, 1) (0 where no site enters the term)."""
    data = data_plate_dim(model_trace, sites.plate)

    def summed(site: dict) -> torch.Tensor:
        return per_example_sum(log_density(site, scaled=False), nesting, data)

    reconstruction = sum(summed(model_trace.nodes[name]) for name in sites.observed)
    kl = sum(
        summed(guide_trace.nodes[name]) - summed(model_trace.nodes[name]) for name in sites.drawn
    )
    return reconstruction, kl


__all__ = ["ElboTerms", "elbo_terms"]
