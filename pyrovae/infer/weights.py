"""Per-example log importance weights of any Pyro program, enumerated sites summed exactly.

For one particle (latents z drawn from the guide q, or from the prior) the log weight of
example n is

    log w_n = log sum_e  prod_f phi_f(e, z)

where e runs over the joint values of every enumerated site (marked
``infer={"enumerate": "parallel"}`` in the model and absent from the guide, or enumerated
by the guide, as the semi-supervised VAE's class y), and the factors phi_f are Pyro's own:
the ones :func:`pyro.infer.traceenum_elbo._compute_model_factors` builds for
``TraceEnum_ELBO`` (a test checks the equality, ``tests/infer/test_pyro_idioms.py``):

- the model's density of every site it observes or receives from the guide, with its mask
  (``poutine.mask``, ``obs_mask``, a masked plate) applied: a masked entry is a factor 1;
- the model's density of every site it enumerates *without* its mask, as TraceEnum_ELBO
  contracts it (``unscaled_log_prob``): a masked step of an HMM is summed over its values,
  sum_e p(e | ...) = 1, and so contributes nothing, never log K;
- one over the guide's density (masked) of every site the guide draws (not those it
  enumerates).

Scales (``poutine.scale``, a subsampled ``pyro.plate("data", N, subsample=...)``, a
beta-VAE's weight) are training devices: a per-example number is of the unscaled model, so
evaluation ignores them (``scaled=False``, the default). The importance-weighted training
bound keeps them (``scaled=True``) and refuses a scale on a factor that is summed over an
enumerated site, where log sum_e cannot carry it.

A model latent that the guide neither draws nor enumerates is drawn from its prior inside
the model: its density is its proposal, so it cancels and enters no factor.

The sum over e is not a plain sum of broadcast log-densities: a factor inside a plate
nested in the data plate is multiplied over that plate *before* an enumerated site outside
it is summed, and a chain under ``pyro.markov`` recycles its dims, so step t and step t + 2
share a tensor dim but not a variable. The contraction is Pyro's own
(:func:`pyro.ops.contract.contract_to_tensor` in the log semiring, as in
``TraceEnum_ELBO`` and ``pyro.infer.mcmc.util``), keeping the particle plate and the data
plate as the result's dims. Without enumerated sites each factor is summed over its own
plates (the same numbers, and traceable by ``torch.fx`` for captured training).

**The data plate** is found, not named (:func:`~pyrovae.infer.plates.find_data_plate`); how
each site enters the weights is :func:`~pyrovae.infer.sites.classify_sites`. A *sequential*
data plate (``for i in pyro.plate("data", N)``) gives row i the factors of iteration i; it
cannot be combined with enumeration.

With one particle the programs run without a particle plate (``particle_plate=None``), so a
program that indexes with plain ``locs[assignment]`` (Pyro's GMM tutorial, ``probs_x[x]``
of Pyro's ``examples/hmm.py``) runs as it does under Pyro's own ELBOs.

Global latents (latent sites outside the data plate, drawn by the guide once per
particle, theta_k ~ q(theta)) are conditioned on rather than weighed: their factors are
left out, so w_nk = p(x_n, z_nk | theta_k) / q(z_nk | x_n, theta_k) and
(1/K) sum_k w_nk estimates the posterior predictive density
E_{q(theta)} p(x_n | theta), not p(x_n). Callers say whether they allow that.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.util import prune_subsample_sites

from .plates import PARTICLES, data_frame, data_plate_dim, find_data_plate
from .pyro_internals import dim_to_symbol, packed_dims
from .sites import WeightedSites, classify_sites, is_enumerated, mark_for_enumeration


def trace_pair(
    model: Callable,
    guide: Callable | None,
    args: tuple,
    particles: int,
    nesting: int,
    particle_plate: bool | None = None,
) -> tuple[poutine.Trace, poutine.Trace | None]:
    """Run the guide (None: the prior is the proposal) and the model against it, both in a
    particle plate of ``particles`` left of their ``nesting`` plates, with parallel
    enumeration allocated as ``TraceEnum_ELBO`` allocates it: the guide's enumerated dims
    first, left of the particle dim, then the model's further left. Discrete model latents
    that the guide does not sample are enumerated even when unmarked
    (``mark_for_enumeration``), so they are summed, never drawn blindly from the prior.

    ``particle_plate`` None: a plate for more than one particle, none for one (the programs
    then run as Pyro's non-vectorized ELBOs run them, so plain indexing works); a site's draws
    are (particles, B, ...) with the plate and (B, ...) without."""
    if particle_plate is None:
        particle_plate = particles > 1
    if not particle_plate and particles != 1:
        raise ValueError(f"{particles} particles need the particle plate")
    particle_dim = -(nesting + 1)
    plate = pyro.plate(PARTICLES, particles, dim=particle_dim) if particle_plate else None

    def in_particles(program: Callable) -> Callable:
        return plate(program) if plate is not None else program

    if guide is None:
        model = mark_for_enumeration(model, lambda name: True)
        model_enum = EnumMessenger(first_available_dim=particle_dim - 1)
        trace = poutine.trace(model_enum(in_particles(model))).get_trace(*args)
        return prune_subsample_sites(trace), None
    guide_enum = EnumMessenger(first_available_dim=particle_dim - 1)
    model_enum = EnumMessenger()  # continues the allocator where the guide left it
    guide_trace = prune_subsample_sites(
        poutine.trace(guide_enum(in_particles(guide))).get_trace(*args)
    )
    model = mark_for_enumeration(model, lambda name: name not in guide_trace.nodes)
    replayed = poutine.replay(model_enum(in_particles(model)), trace=guide_trace)
    model_trace = prune_subsample_sites(poutine.trace(replayed).get_trace(*args))
    return model_trace, guide_trace


def log_density(site: dict, scaled: bool = True) -> torch.Tensor:
    """log p of a site's value with its mask and (``scaled``) its scale, as Pyro's traces
    compute it (without the trace's NaN checks, which read values back to Python and stop
    graph capture)."""
    log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_prob, site["scale"] if scaled else 1.0, site["mask"])


def _factors(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
    sites: WeightedSites,
    scaled: bool,
) -> list[tuple[str, dict, torch.Tensor]]:
    """(site name, site, log factor) for every factor of the weight, with Pyro's rules for
    masks (:func:`pyro.infer.traceenum_elbo._compute_model_factors`): a site the model
    enumerates enters unmasked, every other site masked."""
    out = []
    guide_nodes = guide_trace.nodes if guide_trace is not None else {}
    for name in sites.observed + sites.enumerated + sites.drawn:
        site = model_trace.nodes[name]
        if name in sites.enumerated and name not in guide_nodes:
            log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
            if scaled:
                log_prob = scale_and_mask(log_prob, site["scale"])
        else:
            if name in sites.enumerated and not _is_unmasked(guide_nodes[name]["mask"]):
                raise ValueError(
                    f"site {name!r} is enumerated by the guide under a mask: the weights sum "
                    "it over its values, and a mask on it has no per-example meaning there; "
                    "remove the mask from the guide's site"
                )
            log_prob = log_density(site, scaled)
        out.append((name, site, log_prob))
    if guide_trace is not None:
        for name in sites.drawn:
            site = guide_trace.nodes[name]
            out.append((name, site, -log_density(site, scaled)))
    return out


def _is_unmasked(mask: object) -> bool:
    return mask is None or (isinstance(mask, bool) and mask)


def log_weights_from_traces(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace | None,
    nesting: int,
    batch_size: int,
    *,
    allow_global: bool = False,
    data_plate: str | None = None,
    scaled: bool = False,
) -> tuple[torch.Tensor, WeightedSites]:
    """Per-example log weights (B, K) of a traced pair (see the module docstring), and how
    each site entered them. ``data_plate`` names the data plate (found when None);
    ``scaled`` keeps the sites' scales (training), else they are ignored (evaluation)."""
    plate = find_data_plate(model_trace, batch_size, data_plate)
    sites = classify_sites(model_trace, guide_trace, allow_global=allow_global, plate=plate)
    factors = _factors(model_trace, guide_trace, sites, scaled)
    frame = data_frame(model_trace, plate)
    enumerated = [
        site
        for trace in (model_trace, guide_trace)
        if trace is not None
        for site in trace.nodes.values()
        if site["type"] == "sample" and is_enumerated(site)
    ]
    if frame.dim is None:
        if enumerated:
            raise ValueError(
                f"the data plate {plate!r} is sequential (for i in pyro.plate(...)) and the "
                f"program enumerates {sorted({s['name'] for s in enumerated})}: pyrovae sums "
                "enumerated sites per example only in a vectorized data plate; write "
                f"with pyro.plate({plate!r}, x.shape[0]): ... instead of the loop"
            )
        total = _sequential_per_example(model_trace, factors, nesting, plate, batch_size)
    elif not enumerated:
        total = sum(per_example_sum(lp, nesting, frame.dim) for _, _, lp in factors)
    else:
        total = _contract(model_trace, guide_trace, factors, nesting, plate, scaled)
    total = torch.as_tensor(total)
    total = total.reshape(-1, total.shape[-1]) if total.dim() else total.reshape(1, 1)
    particles = total.shape[0]
    return total.expand(particles, batch_size).transpose(0, 1), sites


def _sequential_per_example(
    model_trace: poutine.Trace,
    factors: list[tuple[str, dict, torch.Tensor]],
    nesting: int,
    plate: str,
    batch_size: int,
) -> torch.Tensor:
    """Per-example sums (K, B) where the data plate is a Python loop: row i holds the
    factors of the loop's i-th iteration (the frames' counters, in order)."""
    counters = sorted(
        {
            f.counter
            for site in model_trace.nodes.values()
            if site["type"] == "sample"
            for f in site["cond_indep_stack"]
            if f.name == plate
        }
    )
    if len(counters) != batch_size:
        raise ValueError(
            f"the sequential data plate {plate!r} ran {len(counters)} iterations for a batch "
            f"of {batch_size} rows: iterate over every row, for i in pyro.plate({plate!r}, "
            "x.shape[0])"
        )
    row = {counter: i for i, counter in enumerate(counters)}
    columns: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
    for _, site, log_prob in factors:
        frame = next(f for f in site["cond_indep_stack"] if f.name == plate)
        summed = per_example_sum(log_prob, nesting, -(nesting + 1)).sum(-1)  # (K,) or (1,)
        columns[row[frame.counter]].append(summed)
    zero = torch.zeros(1)
    return torch.stack([sum(column, zero) if column else zero for column in columns], dim=-1)


def per_example_sum(log_prob: torch.Tensor, nesting: int, data: int) -> torch.Tensor:
    """A factor shaped (K, [plates]) summed over every plate but the data plate: (K, B or 1)."""
    log_prob = torch.as_tensor(log_prob)
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
    plate: str,
    scaled: bool,
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
        term = packed.pack(log_prob, dim_to_symbol(site))
        enum_dims = set(packed_dims(term)) - plate_symbols
        if scaled and enum_dims and not _is_unit(site["scale"]):
            raise ValueError(
                f"site {name!r} is scaled (poutine.scale or a subsampled plate) and depends on "
                "an enumerated site: the importance-weighted bound cannot sum a scaled density "
                "exactly; train with the ELBO (objective='enum'), which scales it outside the sum"
            )
        sum_dims |= enum_dims
        dim_to_size.update(zip(packed_dims(term), term.shape, strict=True))
        ordinal = frozenset(
            plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
        )
        tree.setdefault(ordinal, []).append(term)
    target = frozenset(
        plate_to_symbol[name] for name in (PARTICLES, plate) if name in plate_to_symbol
    )
    try:
        ring = LogRing(dim_to_size=dim_to_size)
        term = contract_to_tensor(tree, sum_dims, target_ordinal=target, ring=ring)
    except NotImplementedError as error:
        raise ValueError(
            f"the enumerated sites cannot be summed exactly: {error}. pyrovae sums what Pyro's "
            "TraceEnum_ELBO sums; restructure the plates as its message says"
        ) from error
    total = packed.unpack(term, symbol_to_dim)
    return per_example_sum(total, nesting, data_plate_dim(model_trace, plate))


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
    "enumerated_values",
    "log_weights_from_traces",
    "trace_pair",
]
