"""Per-example log importance weights of any Pyro program, enumerated sites summed exactly.

For one particle (latents z drawn from the guide q, or from the prior) the log weight of
example n is

    log w_n = log sum_e  prod_f phi_f(e, z)

where e runs over the joint values of every enumerated site (marked
``infer={"enumerate": "parallel"}`` in the model and absent from the guide, or enumerated
by the guide, as the semi-supervised VAE's class y), and the factors phi_f are

- the model's density of every site it observes, enumerates, or receives from the guide;
- one over the guide's density of every site the guide draws (not those it enumerates).

A model latent that the guide neither draws nor enumerates is drawn from its prior inside
the model: its density is its proposal, so it cancels and enters no factor.

The sum over e is not a plain sum of broadcast log-densities: a factor inside a plate
nested in the data plate is multiplied over that plate *before* an enumerated site outside
it is summed, and a chain under ``pyro.markov`` recycles its dims, so step t and step t + 2
share a tensor dim but not a variable. The contraction is Pyro's own
(:func:`pyro.ops.contract.contract_to_tensor` in the log semiring, as in
``TraceEnum_ELBO`` and ``pyro.infer.mcmc.util``), keeping the particle plate and the plate
``"data"`` as the result's dims. Without enumerated sites each factor is summed over its
own plates (the same numbers, and traceable by ``torch.fx`` for captured training).

Global latents (latent sites outside the plate ``"data"``, drawn by the guide once per
particle, theta_k ~ q(theta)) are conditioned on rather than weighed: their factors are
left out, so w_nk = p(x_n, z_nk | theta_k) / q(z_nk | x_n, theta_k) and
(1/K) sum_k w_nk estimates the posterior predictive density
E_{q(theta)} p(x_n | theta), not p(x_n). Callers say whether they allow that.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.util import prune_subsample_sites

#: The name of the vectorized particle plate, left of the program's own plates.
PARTICLES = "num_particles_vectorized"
DATA = "data"


@dataclass
class WeightedSites:
    """How each sample site of a traced pair enters the weights (site names)."""

    observed: list[str] = field(default_factory=list)
    enumerated: list[str] = field(default_factory=list)  # summed exactly
    drawn: list[str] = field(default_factory=list)  # by the guide: p / q
    prior_drawn: list[str] = field(default_factory=list)  # by the model's prior: cancels
    global_latents: list[str] = field(default_factory=list)  # conditioned on


def in_data_plate(site: dict) -> bool:
    return any(f.name == DATA for f in site["cond_indep_stack"])


def is_enumerated(site: dict) -> bool:
    return site["infer"].get("_enumerate_dim") is not None


def trace_pair(
    model: Callable,
    guide: Callable | None,
    args: tuple,
    particles: int,
    nesting: int,
) -> tuple[poutine.Trace, poutine.Trace | None]:
    """Run the guide (None: the prior is the proposal) and the model against it, both in a
    particle plate of ``particles`` left of their ``nesting`` plates, with parallel
    enumeration allocated as ``TraceEnum_ELBO`` allocates it: the guide's enumerated dims
    first, left of the particle dim, then the model's further left. Discrete model latents
    that the guide does not sample are enumerated even when unmarked
    (``mark_for_enumeration``), so they are summed, never drawn blindly from the prior."""
    particle_dim = -(nesting + 1)
    plate = pyro.plate(PARTICLES, particles, dim=particle_dim)
    if guide is None:
        model = mark_for_enumeration(model, lambda name: True)
        model_enum = EnumMessenger(first_available_dim=particle_dim - 1)
        trace = poutine.trace(model_enum(plate(model))).get_trace(*args)
        return prune_subsample_sites(trace), None
    guide_enum = EnumMessenger(first_available_dim=particle_dim - 1)
    model_enum = EnumMessenger()  # continues the allocator where the guide left it
    guide_trace = prune_subsample_sites(poutine.trace(guide_enum(plate(guide))).get_trace(*args))
    model = mark_for_enumeration(model, lambda name: name not in guide_trace.nodes)
    replayed = poutine.replay(model_enum(plate(model)), trace=guide_trace)
    model_trace = prune_subsample_sites(poutine.trace(replayed).get_trace(*args))
    return model_trace, guide_trace


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
    model_trace: poutine.Trace, guide_trace: poutine.Trace | None, *, allow_global: bool
) -> WeightedSites:
    """Sort the sample sites of a traced pair by how they enter the weights, refusing what
    the weights cannot hold, with the site named and the fix said."""
    sites = WeightedSites()
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
        local = in_data_plate(site)
        if site["is_observed"]:
            if not local:
                raise ValueError(
                    f"the model observes {name!r} outside pyro.plate('data'): per-example "
                    "log-likelihoods need every observation inside the data plate"
                )
            sites.observed.append(name)
        elif is_enumerated(site):
            if not local:
                raise ValueError(
                    f"site {name!r} is enumerated outside pyro.plate('data'): a discrete global "
                    "latent couples all examples, so per-example log p(x) cannot sum it; "
                    "move it inside the data plate or give the guide a distribution over it"
                )
            sites.enumerated.append(name)
        elif not local:
            if guide_trace is None:
                raise ValueError(
                    f"site {name!r} is a global latent (outside pyro.plate('data')): "
                    "proposal='prior' would estimate each example's p(x_n) alone, with its own "
                    "draws of it; use proposal='guide' for the posterior predictive density"
                )
            if name not in guide_nodes:
                raise ValueError(
                    f"site {name!r} is a global latent (outside pyro.plate('data')) that the "
                    "guide does not sample; give the guide a distribution over it"
                )
            if not allow_global:
                raise ValueError(
                    f"site {name!r} is a global latent (outside pyro.plate('data')): the "
                    "importance-weighted bound is a per-example bound on p(x_n | z) and cannot "
                    "weigh a latent shared by all examples; train with the ELBO instead"
                )
            sites.global_latents.append(name)
        elif name in guide_nodes:
            sites.drawn.append(name)
        else:
            sites.prior_drawn.append(name)
    return sites


def log_density(site: dict) -> torch.Tensor:
    """log p of a site's value with its scale and mask, as Pyro's traces compute it (without
    the trace's NaN checks, which read values back to Python and stop graph capture)."""
    log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_prob, site["scale"], site["mask"])


def _factors(
    model_trace: poutine.Trace, guide_trace: poutine.Trace | None, sites: WeightedSites
) -> list[tuple[str, dict, torch.Tensor]]:
    """(site name, site, log factor) for every factor of the weight."""
    out = []
    for name in sites.observed + sites.enumerated + sites.drawn:
        site = model_trace.nodes[name]
        out.append((name, site, log_density(site)))
    if guide_trace is not None:
        for name in sites.drawn:
            site = guide_trace.nodes[name]
            out.append((name, site, -log_density(site)))
    return out


def log_weights_from_traces(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
    nesting: int,
    batch_size: int,
    *,
    allow_global: bool = False,
) -> tuple[torch.Tensor, WeightedSites]:
    """Per-example log weights (B, K) of a traced pair (see the module docstring), and how
    each site entered them."""
    sites = classify_sites(model_trace, guide_trace, allow_global=allow_global)
    factors = _factors(model_trace, guide_trace, sites)
    data = data_plate_dim(model_trace)
    enumerated = [
        site
        for trace in (model_trace, guide_trace)
        if trace is not None
        for site in trace.nodes.values()
        if site["type"] == "sample" and is_enumerated(site)
    ]
    if not enumerated:
        total = sum(per_example_sum(lp, nesting, data) for _, _, lp in factors)
    else:
        total = _contract(model_trace, guide_trace, factors, nesting, data)
    particles = total.shape[0]
    return total.expand(particles, batch_size).transpose(0, 1), sites


def data_plate_dim(trace: poutine.Trace) -> int:
    for site in trace.nodes.values():
        if site["type"] == "sample":
            for frame in site["cond_indep_stack"]:
                if frame.name == DATA:
                    return frame.dim
    raise ValueError(
        "the model has no pyro.plate('data', N): pyrovae needs the examples' plate named "
        "'data' (with pyro.plate('data', x.shape[0]): ...) to give per-example numbers"
    )


def per_example_sum(log_prob: torch.Tensor, nesting: int, data: int) -> torch.Tensor:
    """A factor shaped (K, [plates]) summed over every plate but the data plate: (K, B or 1)."""
    log_prob = log_prob.reshape((1,) * (nesting + 1 - log_prob.dim()) + tuple(log_prob.shape))
    keep = (-(nesting + 1), data)
    others = [d for d in range(-nesting, 0) if d not in keep]
    if others:
        log_prob = log_prob.sum(others, keepdim=True)
    return log_prob.reshape(log_prob.shape[0], -1)


def _contract(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
    factors: list[tuple[str, dict, torch.Tensor]],
    nesting: int,
    data: int,
) -> torch.Tensor:
    """Sum the enumerated dims out of the factors' product with Pyro's tensor contraction,
    keeping the particle and data plates: (K, B or 1)."""
    if guide_trace is not None:
        guide_trace.symbolize_dims()
        model_trace.symbolize_dims(guide_trace.plate_to_symbol)
    else:
        model_trace.symbolize_dims()
    plate_to_symbol = model_trace.plate_to_symbol
    symbol_to_dim = dict(model_trace.symbol_to_dim)
    if guide_trace is not None:
        symbol_to_dim.update(guide_trace.symbol_to_dim)
    plate_symbols = set(plate_to_symbol.values())
    dim_to_size = {
        plate_to_symbol[f.name]: f.size
        for _, site, _ in factors
        for f in site["cond_indep_stack"]
        if f.vectorized
    }
    tree: OrderedDict[frozenset, list[torch.Tensor]] = OrderedDict()
    sum_dims: set[str] = set()
    for name, site, log_prob in factors:
        term = packed.pack(log_prob, site["infer"]["_dim_to_symbol"])
        enum_dims = set(term._pyro_dims) - plate_symbols
        if enum_dims and not _is_unit(site["scale"]):
            raise ValueError(
                f"site {name!r} is scaled (poutine.scale or a subsampled plate) and depends on "
                "an enumerated site: a per-example log p(x) cannot sum a scaled density "
                "exactly; evaluate the program without the scale"
            )
        sum_dims |= enum_dims
        dim_to_size.update(zip(term._pyro_dims, term.shape, strict=True))
        ordinal = frozenset(
            plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
        )
        tree.setdefault(ordinal, []).append(term)
    target = frozenset({plate_to_symbol[PARTICLES], plate_to_symbol[DATA]})
    try:
        ring = LogRing(dim_to_size=dim_to_size)
        term = contract_to_tensor(tree, sum_dims, target_ordinal=target, ring=ring)
    except NotImplementedError as error:
        raise ValueError(
            f"the enumerated sites cannot be summed exactly: {error}. pyrovae sums what Pyro's "
            "TraceEnum_ELBO sums; restructure the plates as its message says"
        ) from error
    total = packed.unpack(term, symbol_to_dim)
    return per_example_sum(total, nesting, data)


def _is_unit(scale: float | torch.Tensor) -> bool:
    if isinstance(scale, torch.Tensor):
        return scale.numel() == 1 and float(scale) == 1.0
    return scale == 1.0


def enumerated_values(
    model_trace: poutine.Trace, guide_trace: poutine.Trace | None, nesting: int
) -> int:
    """The most enumerated values one site's density holds at once (1 without enumeration;
    C for the semi-supervised VAE's class): a pass of the weights holds that many copies of
    the program's activations. Enumerated dims sit left of the particle dim."""
    largest = 1
    for trace in (model_trace, guide_trace):
        if trace is None:
            continue
        for site in trace.nodes.values():
            if site["type"] == "sample" and torch.is_tensor(site["value"]):
                batch = site["fn"].batch_shape if hasattr(site["fn"], "batch_shape") else ()
                shape = torch.broadcast_shapes(tuple(batch), ())
                largest = max(largest, math.prod(shape[: max(len(shape) - (nesting + 1), 0)]))
    return largest


__all__ = [
    "DATA",
    "PARTICLES",
    "WeightedSites",
    "classify_sites",
    "enumerated_values",
    "log_weights_from_traces",
    "trace_pair",
]
