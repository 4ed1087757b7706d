"""What the figures show, computed from traces of any (model, guide) pair.

Nothing here knows a model's class: the observed site is the model's observed
sample site (ours is ``"x"``; Pyro's VAE example calls it ``"obs"``), the latent is
the guide's continuous vector site that the model also samples. Images are the
mean of p(x | z), which reads better than a Bernoulli draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine


@dataclass(frozen=True)
class Sites:
    """The sites the views use: the observed data site and the latent vector site."""

    observed: str
    latent: str | None
    latent_dim: int | None


def find_sites(model: Callable, guide: Callable, args: tuple) -> Sites:
    """Trace guide and model on one batch and name their observed and latent sites."""
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    observed = [
        name
        for name, s in model_trace.nodes.items()
        if s["type"] == "sample" and s["is_observed"] and name in _data_sites(model_trace)
    ]
    if not observed:
        raise ValueError(
            "the model observes no site inside the 'data' plate; a model must observe its data "
            "with pyro.sample(name, ..., obs=x) in pyro.plate('data', N)"
        )
    latent, latent_dim = None, None
    for name, s in guide_trace.nodes.items():
        if s["type"] != "sample" or name not in model_trace.nodes or s["is_observed"]:
            continue
        fn = s["fn"]
        if not fn.has_rsample and not isinstance(fn, dist.Delta):
            continue
        if fn.event_dim == 1:
            latent, latent_dim = name, int(s["value"].shape[-1])
            break
    return Sites(observed[0], latent, latent_dim)


def _data_sites(trace: poutine.Trace) -> set[str]:
    return {
        name
        for name, s in trace.nodes.items()
        if s["type"] == "sample" and any(f.name == "data" for f in s["cond_indep_stack"])
    }


def _mean(fn: object, value: torch.Tensor) -> torch.Tensor:
    try:
        return fn.mean  # type: ignore[attr-defined]
    except NotImplementedError:
        return value


@torch.no_grad()
def encode(guide: Callable, args: tuple, site: str) -> torch.Tensor:
    """Posterior means E_q[z | x] (N, L) of the latent ``site`` (a draw if q has no mean)."""
    node = poutine.trace(guide).get_trace(*args).nodes[site]
    return _mean(node["fn"], node["value"])


@torch.no_grad()
def decode_mean(model: Callable, args: tuple, sites: Sites, z: torch.Tensor) -> torch.Tensor:
    """E[x | z] (N, D) from the model with the latent fixed to z (N, L); args set the plate."""
    conditioned = poutine.condition(model, data={sites.latent: z})
    node = poutine.trace(conditioned).get_trace(*args).nodes[sites.observed]
    return _mean(node["fn"], node["value"])


@torch.no_grad()
def reconstruct(model: Callable, guide: Callable, args: tuple, sites: Sites) -> torch.Tensor:
    """E[x | z = E_q[z | x]] (N, D): decode each example's posterior mean."""
    return decode_mean(model, args, sites, encode(guide, args, sites.latent))


@torch.no_grad()
def prior_means(model: Callable, args: tuple, sites: Sites) -> torch.Tensor:
    """E[x | z] (N, D) for z drawn from the prior: one per row of args[0]."""
    node = poutine.trace(model).get_trace(*args).nodes[sites.observed]
    return _mean(node["fn"], node["value"])


@torch.no_grad()
def traversals(
    model: Callable,
    x: torch.Tensor,
    sites: Sites,
    base: torch.Tensor,
    dims: list[int],
    values: torch.Tensor,
    args: tuple[torch.Tensor, ...] = (),
) -> torch.Tensor:
    """Decoded means (len(dims), S, D): latent ``dims[r]`` set to each of ``values`` (S,).

    The other coordinates stay at ``base`` (L,), e.g. one image's posterior mean. Every
    draw takes the programs' arguments of the first example: x's row, and of ``args``
    (further arguments (N, ...) after x) the first row.
    """
    s = len(values)
    z = base.expand(len(dims), s, -1).clone()
    for r, d in enumerate(dims):
        z[r, :, d] = values
    flat = z.reshape(len(dims) * s, -1)
    rows = repeat_first((x, *args), len(flat))
    return decode_mean(model, rows, sites, flat).reshape(len(dims), s, -1)


@torch.no_grad()
def interpolations(
    model: Callable,
    x: torch.Tensor,
    sites: Sites,
    z0: torch.Tensor,
    z1: torch.Tensor,
    steps: int,
    args: tuple[torch.Tensor, ...] = (),
) -> torch.Tensor:
    """Decoded means (P, steps, D) along straight lines from z0 (P, L) to z1 (P, L), each
    with the programs' arguments of the first example (as :func:`traversals`)."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)[None, :, None]
    z = (1 - t) * z0[:, None] + t * z1[:, None]  # (P, steps, L)
    flat = z.reshape(-1, z.shape[-1])
    rows = repeat_first((x, *args), len(flat))
    return decode_mean(model, rows, sites, flat).reshape(*z.shape[:2], -1)


def repeat_first(args: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    """The first example's arguments repeated for ``n`` rows: each (N, ...) -> (n, ...)."""
    return tuple(a[:1].expand(n, *a.shape[1:]) for a in args)


def active_dims(codes: torch.Tensor, k: int) -> list[int]:
    """Indices of the k latent dimensions whose posterior means vary most across data.

    A unit is "active" when Cov_x(E_q[z_d | x]) is large (Burda et al. 2016, sec. 5.2);
    inactive units sit at the prior and traversing them changes nothing.
    """
    # The population variance: defined (zero) for a single test row too.
    return codes.var(dim=0, correction=0).argsort(descending=True)[:k].tolist()
