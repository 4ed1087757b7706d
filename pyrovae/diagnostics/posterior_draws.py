"""The posterior draws :func:`~pyrovae.diagnostics.to_inference_data` stores, laid out per site.

From one importance pass over E chosen examples with K particles, a latent site's draws are
``(K, *batch, *event)`` with the data plate among the batch dims. :func:`arrange` moves the
data plate's dim next to the particles, ``(K, E, *rest)``, and names the ``rest``: a dim of a
plate by the plate's name, an event dim ``{site}_dim_{i}``.

Sites the model enumerates (a mixture's cluster c, an HMM's states) are not drawn by the
guide: :func:`enumerated_draws` gives, for each stored draw z_k of the guide's local latents,
a draw c_k ~ p(c | x, z_k) by :func:`~pyrovae.infer.assign` (temperature 1, jointly over all
enumerated sites of an example) and the exact conditional probabilities p(c = v | x, z_k)
of each site alone by Pyro's ``TraceEnum_ELBO.compute_marginals``; without guide latents
(an empty guide) both are of p(c | x) itself. The programs run once on K E rows, each row
an example with its draw z_k fixed (:class:`FixedValues`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, infer_discrete
from pyro.poutine.messenger import Messenger

from ..infer.discrete import GuideValues, _per_example
from ..infer.plates import PARTICLES


class FixedValues(Messenger):
    """Fix the named sample sites of a program to given values (marked done, so nothing
    draws or enumerates them; unlike ``poutine.condition`` they stay latent, so that
    ``poutine.replay`` and Pyro's ELBOs accept the trace as a guide's)."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict) -> None:
        value = self.values.get(msg["name"])
        if value is not None and not msg["is_observed"]:
            msg["value"] = value
            msg["done"] = True


def _frames(site: dict) -> list:
    return [f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLES]


def arrange(site: dict, plate: str | None) -> tuple[torch.Tensor, list[str]]:
    """A site's draws from an importance pass with a particle plate, ``(K, *batch, *event)``,
    as ``(K, E, *rest)`` with the data plate ``plate``'s dim second (or ``(K, *rest)`` for a site
    outside it), and the names of ``rest``: a plate's dim by the plate's name, an event dim
    ``{site}_dim_{i}``, another batch dim ``{site}_batch_{i}``; broadcast dims of size one
    that no plate holds are dropped."""
    fn, name = site["fn"], site["name"]
    event = len(fn.event_shape)
    value = site["value"].expand(tuple(fn.batch_shape) + tuple(fn.event_shape))
    nb = value.dim() - event
    by_dim = {f.dim: f.name for f in _frames(site)}
    names = [by_dim.get(i - nb) for i in range(nb)]
    keep = [i for i in range(1, nb) if names[i] is not None or value.shape[i] > 1]
    first = [i for i in keep if names[i] == plate]
    order = [0, *first, *[i for i in keep if i not in first]]
    dropped = [i for i in range(1, nb) if i not in keep]
    value = value[tuple(0 if i in dropped else slice(None) for i in range(nb))]
    remaining = [i for i in range(nb) if i not in dropped]
    value = value.permute(*[remaining.index(i) for i in order], *range(len(remaining), value.dim()))
    rest = [names[i] or f"{name}_batch_{i}" for i in order[1 + len(first) :]]
    return value, rest + [f"{name}_dim_{i}" for i in range(event)]


def fixed_rows(
    draws: dict[str, torch.Tensor], sites: dict[str, dict], plate: str
) -> dict[str, torch.Tensor]:
    """Local draws ``(K, E, *rest)`` as the values of one run on K E rows: the data plate's
    dim back where the site has it, with K and E merged into it (row ``k * E + e``)."""
    rows = {}
    for name, value in draws.items():
        fn = sites[name]["fn"]
        flat = value.reshape(-1, *value.shape[2:])  # (K * E, *rest)
        frame = next(f for f in _frames(sites[name]) if f.name == plate)
        rows[name] = flat.movedim(0, flat.dim() - len(fn.event_shape) + frame.dim)
    return rows


@torch.no_grad()
def enumerated_draws(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    draws: dict[str, torch.Tensor],
    sites: dict[str, dict],
    plate: str,
    names: list[str],
    nesting: int,
    num_draws: int,
    global_values: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """For the examples x (E, ...) and the guide's local draws (each ``(K, E, *rest)``), a draw
    of every model-enumerated site in ``names`` given each draw, ``(K, E, *site rest)``, and each
    site's exact conditional probabilities p(c = v | x, z_k), ``(K, E, *site rest, V)``.
    ``global_values``: the guide's draws of global latents, (K, ...) each, which the draw k
    was weighed with; with them, one run per draw k (a global latent has one value per run).

    Values of a site index its enumerable support (``fn.enumerate_support()``) in order."""
    if global_values:
        parts = [
            _enumerated(
                model,
                guide,
                x,
                {n: v[k : k + 1] for n, v in draws.items()},
                {n: v[k] for n, v in global_values.items()},
                sites,
                plate,
                names,
                nesting,
                1,
            )
            for k in range(num_draws)
        ]
        return tuple({n: torch.cat([p[i][n] for p in parts]) for n in names} for i in range(2))  # type: ignore[return-value]
    return _enumerated(model, guide, x, draws, {}, sites, plate, names, nesting, num_draws)


def _enumerated(model, guide, x, draws, global_values, sites, plate, names, nesting, k):
    """:func:`enumerated_draws` in one run of K E rows (the global latents fixed): the draw
    as :func:`~pyrovae.infer.assign` makes it at temperature 1 (Pyro's ``infer_discrete`` on
    the model given the guide's values), the probabilities by ``compute_marginals``."""
    rows = x.expand(k, *x.shape).reshape(-1, *x.shape[1:])  # (K * E, ...), row k * E + e
    fixed = FixedValues({**fixed_rows(draws, sites, plate), **global_values})(guide)
    guide_trace = poutine.trace(fixed).get_trace(rows)
    program = infer_discrete(
        GuideValues(guide_trace)(model),
        first_available_dim=-(nesting + 1),
        temperature=1,
        strict_enumeration_warning=False,  # the caller found enumerated sites
    )
    drawn = poutine.trace(program).get_trace(rows)
    marginals = TraceEnum_ELBO(max_plate_nesting=nesting).compute_marginals(model, fixed, rows)
    values, probs = {}, {}
    for name in names:
        site = drawn.nodes[name]
        value = _per_example(site, plate)  # (K * E, *rest)
        values[name] = value.reshape(k, -1, *value.shape[1:])
        marginal = marginals[name]
        support = marginal.enumerate_support(expand=False)  # (V, 1, ..., 1)
        log_p = marginal.log_prob(support)  # (V, *batch)
        frame = next(f for f in _frames(site) if f.name == plate)
        log_p = log_p.movedim(log_p.dim() + frame.dim, 1).movedim(0, -1)  # (K * E, *rest, V)
        probs[name] = log_p.exp().reshape(k, -1, *log_p.shape[1:])
    return values, probs


@torch.no_grad()
def guide_enumerated_pool(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    nesting: int,
    names: list[str],
    trace: poutine.Trace,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, list[str]], dict, dict]:
    """Joint draws of the sites the guide enumerates (the semi-supervised VAE's class y) and
    the guide's other latents, for examples x (E, ...).

    For each joint value v of the sites in ``names`` (their supports' product, V values) both
    programs run with y = v fixed: K draws z_k^v ~ q(z | x, v), weighed
    w_k^v = p(x, v, z_k^v) / q(z_k^v | x, v) (so sum_v w_k^v is the pass's weight w_k). The
    V K pairs (v, z_k^v) with weights w_k^v are importance draws of p(y, z | x).

    Returns:
        log weights ``(E, V * K)``; every drawn site's values ``(V * K, E, *rest)`` and
        y's, ``(V * K, E, *event)`` (pool entry ``v * K + k``); their dim names; their trace
        sites; and per site in ``names`` the importance estimate of p(y = value | x),
        (E, V_site).
    """
    from itertools import product

    from ..infer.passes import weighted_pass

    supports = {}
    for name in names:
        fn = trace.nodes[name]["fn"]
        support = fn.enumerate_support(expand=False)  # (V, 1, ..., 1, *event)
        supports[name] = support.reshape(len(support), *fn.event_shape)
    rows = x.shape[0]
    log_weights, local, dims, nodes = [], {}, {}, {}
    combos = list(product(*(range(len(supports[n])) for n in names)))
    for combo in combos:
        fixed = {n: supports[n][i] for n, i in zip(names, combo, strict=True)}
        lw, traced, weighted = weighted_pass(
            poutine.condition(model, data=fixed),
            poutine.condition(guide, data=fixed),
            (x,),
            num_samples,
            nesting,
            allow_global=True,
            particle_plate=True,
        )
        log_weights.append(lw.double())
        for name in weighted.drawn:
            value, dims[name] = arrange(traced.nodes[name], weighted.plate)
            local.setdefault(name, []).append(value)
            nodes[name] = traced.nodes[name]
        for name, value in fixed.items():
            local.setdefault(name, []).append(value.expand(num_samples, rows, *value.shape))
            dims[name] = [f"{name}_dim_{i}" for i in range(value.dim())]
            nodes[name] = traced.nodes[name]
    stacked = torch.stack(log_weights)  # (C, E, K)
    probs = {}
    per_value = stacked.logsumexp(-1)  # (C, E)
    for j, name in enumerate(names):
        marginal = torch.full((len(supports[name]), rows), -torch.inf, dtype=torch.float64)
        for c, combo in enumerate(combos):
            marginal[combo[j]] = torch.logaddexp(marginal[combo[j]], per_value[c])
        probs[name] = torch.softmax(marginal, 0).T  # (E, V)
    pool = stacked.permute(1, 0, 2).reshape(rows, -1)  # (E, C * K), entry c * K + k
    return pool, {n: torch.cat(v) for n, v in local.items()}, dims, nodes, probs
