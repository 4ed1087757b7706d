"""How each sample site of a traced (model, guide) pair enters per-example importance
weights (:class:`WeightedSites`): observed, enumerated (summed exactly), drawn by the guide
(p / q), drawn by the model's prior (cancels), or a global latent (conditioned on); and the
programs these rules refuse, each refusal naming the site and the fix
(:func:`classify_sites`, :func:`refuse_point_masses`). See :mod:`pyrovae.infer.weights` for
the weights themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyro.distributions as dist
from pyro import poutine

from .plates import DATA, in_plate
from .pyro_internals import enumerate_dim


@dataclass
class WeightedSites:
    """How each sample site of a traced pair enters the weights (site names)."""

    observed: list[str] = field(default_factory=list)
    enumerated: list[str] = field(default_factory=list)  # summed exactly
    drawn: list[str] = field(default_factory=list)  # by the guide: p / q
    prior_drawn: list[str] = field(default_factory=list)  # by the model's prior: cancels
    global_latents: list[str] = field(default_factory=list)  # conditioned on
    #: The data plate's name (found by :func:`~pyrovae.infer.plates.find_data_plate`).
    plate: str = DATA


def is_enumerated(site: dict) -> bool:
    return enumerate_dim(site) is not None


def is_point_mass(fn: object) -> bool:
    """Whether a site's distribution is a point mass (``dist.Delta``, as ``AutoDelta`` and
    ``DeltaEncoder`` draw), seen through ``to_event``, ``expand`` and masks."""
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        fn = fn.base_dist
    return isinstance(fn, dist.Delta)


def mark_for_enumeration(program: Callable, chosen: Callable[[str], bool]) -> Callable:
    """``program`` with each unobserved, unmarked sample site whose distribution can be
    enumerated and whose name ``chosen`` accepts marked ``infer={"enumerate": "parallel"}``,
    and flagged ``"_auto_enumerated"`` so reports can tell it from the user's own marks."""

    def config(msg: dict) -> dict:
        fn = msg["fn"]
        if (
            msg["is_observed"]
            or msg["infer"].get("enumerate") is not None
            or not getattr(fn, "has_enumerate_support", False)
            or not chosen(msg["name"])
        ):
            return {}
        return {"enumerate": "parallel", "_auto_enumerated": True}

    return poutine.infer_config(program, config)


def classify_sites(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
    *,
    allow_global: bool,
    plate: str = DATA,
) -> WeightedSites:
    """Sort the sample sites of a traced pair by how they enter the weights, refusing what
    the weights cannot hold, with the site named and the fix said. ``plate``: the data
    plate's name (:func:`~pyrovae.infer.plates.find_data_plate`)."""
    sites = WeightedSites(plate=plate)
    where = f"pyro.plate({plate!r})"
    guide_nodes = guide_trace.nodes if guide_trace is not None else {}
    for trace in (model_trace, guide_trace):
        if trace is None:
            continue
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and site["infer"].get("enumerate") == "sequential":
                raise ValueError(
                    f"site {name!r} is marked for sequential enumeration, which pyrovae cannot "
                    "sum inside its vectorized importance weights; mark it "
                    "infer={'enumerate': 'parallel'} instead"
                )
    for name, site in guide_nodes.items():
        if site["type"] == "sample" and name not in model_trace.nodes:
            raise ValueError(
                f"the guide samples {name!r}, a site the model does not have: every guide site "
                "must be a latent site of the model (rename it to match, or remove it)"
            )
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        local = in_plate(site, plate)
        if site["is_observed"]:
            if not local:
                raise ValueError(
                    f"the model observes {name!r} outside {where}: per-example "
                    "log-likelihoods need every observation inside the data plate"
                )
            sites.observed.append(name)
        elif is_enumerated(site) or (name in guide_nodes and is_enumerated(guide_nodes[name])):
            if not local:
                raise ValueError(
                    f"site {name!r} is enumerated outside {where}: a discrete global "
                    "latent couples all examples, so per-example log p(x) cannot sum it; "
                    "move it inside the data plate or give the guide a distribution over it"
                )
            sites.enumerated.append(name)
        elif not local:
            if guide_trace is None:
                raise ValueError(
                    f"site {name!r} is a global latent (outside {where}): "
                    "proposal='prior' would estimate each example's p(x_n) alone, with its own "
                    "draws of it; use proposal='guide' for the posterior predictive density"
                )
            if name not in guide_nodes:
                raise ValueError(
                    f"site {name!r} is a global latent (outside {where}) that the "
                    "guide does not sample; give the guide a distribution over it"
                )
            if not allow_global:
                raise ValueError(
                    f"site {name!r} is a global latent (outside {where}): the "
                    "importance-weighted bound is a per-example bound on p(x_n | z) and cannot "
                    "weigh a latent shared by all examples; train with the ELBO instead"
                )
            sites.global_latents.append(name)
        elif name in guide_nodes:
            sites.drawn.append(name)
        else:
            sites.prior_drawn.append(name)
    return sites


def refuse_point_masses(guide_trace: poutine.Trace | None, sites: WeightedSites) -> None:
    """Refuse a local latent that the guide draws from a point mass: importance sampling
    from a Delta proposal estimates no marginal likelihood (log p(x, z*) is not log p(x),
    and its "weights" are all equal, ESS = K, k-hat undefined). Pyro defines no such
    estimate either."""
    if guide_trace is None:
        return
    for name in sites.drawn:
        if is_point_mass(guide_trace.nodes[name]["fn"]):
            raise ValueError(
                f"the guide draws the local latent {name!r} from a point mass (dist.Delta, "
                "AutoDelta, DeltaEncoder): importance sampling with a point-mass proposal does "
                "not estimate log p(x) (it gives log p(x, z*) with standard error 0). Evaluate "
                "the joint at the point instead (pyrovae.infer.elbo_terms: reconstruction "
                "minus kl is log p(x, z*)), or fit a guide with a density (a Normal, "
                "AutoNormal) for log p(x)"
            )


__all__ = [
    "WeightedSites",
    "classify_sites",
    "is_enumerated",
    "is_point_mass",
    "mark_for_enumeration",
    "refuse_point_masses",
]
