"""Discrete posteriors of any program: the MAP or a posterior draw of every enumerated site.

For a model p(x, z, c) with discrete latents c enumerated by the model
(``infer={"enumerate": "parallel"}``, absent from the guide) and continuous latents z drawn
by the guide q(z | x), :func:`assign` returns, for every example n,

    temperature 0:  c_n = argmax_c p(c | x_n, z_n)      (Viterbi-like max-product)
    temperature 1:  c_n ~ p(c | x_n, z_n)               (forward-filter backward-sample)

with z_n ~ q(z | x_n) drawn once. The maximisation and the draw are joint over all the
model's enumerated sites of a row (an HMM's whole state path, not each state alone), by
Pyro's :func:`~pyro.infer.infer_discrete` on the model replayed against the guide's draw, as
``TraceEnumSample_ELBO`` does. With no continuous latents (an empty guide, as for the
Gaussian mixture) there is nothing to condition on and the answer is the exact MAP of, or
an exact draw from, p(c | x).

A site the *guide* enumerates (the semi-supervised VAE's class y, marked by the guide for
``TraceEnum_ELBO``) has no model posterior to contract: its answer is the guide's posterior
q(y | x), its mode at temperature 0 and a draw from it at temperature 1; the guide's other
latents are then drawn given that y, and the model's enumerated sites given those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from pyro import poutine
from pyro.infer import infer_discrete
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from ..rng import aside
from .modes import evaluated
from .passes import traced_nesting
from .plates import find_data_plate, named_data_plate, retracer

Args = tuple[Any, ...]


@evaluated
def assign(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor | tuple[torch.Tensor | None, ...],
    temperature: int = 0,
    *,
    batch_size: int = 1000,
    data_plate: str | None = None,
) -> dict[str, torch.Tensor]:
    """argmax_c p(c | x, z) (temperature 0) or c ~ p(c | x, z) (1) for every enumerated site.

    z ~ q(z | x) is one draw of the guide's latents per example; without continuous latents
    the result is the exact MAP of (or an exact draw from) p(c | x). Sites the guide
    enumerates give the guide's posterior q(y | x) instead: its argmax (0) or a draw (1).
    See the module docstring.

    Args:
        model: a Pyro program ``model(*x)`` observing the examples inside
            ``pyro.plate("data", N)``, its discrete latents marked
            ``infer={"enumerate": "parallel"}`` (or by ``config_enumerate``).
        guide: a Pyro program with the same arguments that samples every latent the model
            does not enumerate (a function doing nothing when there are none).
        x: the examples, (N, ...), or a tuple of arguments whose tensors all have N rows
            (None entries are passed through).
        temperature: 0 for the MAP, 1 for a posterior draw.
        batch_size: rows per pass; every chunk is an independent call of the programs.
        data_plate: the plate over the examples where several plates of the batch's size
            hold every observation (found otherwise, whatever its name:
            :func:`~pyrovae.infer.plates.find_data_plate`).

    Returns:
        ``{site name: values (N, ...)}`` for every site the guide enumerates, then every site the
        model enumerates, each in program order, the data plate's dimension first (an HMM's state
        s_t under ``pyro.markov`` is its own site, (N,) each).

    Raises:
        ValueError: temperature is not 0 or 1; x has no rows or unequal rows; no site is
            enumerated (the message names the discrete latents to mark); an enumerated site
            is outside ``pyro.plate("data")`` (not per example) or marked ``"sequential"``.
    """
    if temperature not in (0, 1) or isinstance(temperature, bool):
        raise ValueError(
            f"temperature must be 0 (the MAP) or 1 (a posterior draw), got {temperature!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    args = x if isinstance(x, tuple) else (x,)
    n = _num_rows(args)
    with torch.no_grad():
        probe = _rows(args, 0, min(n, 2))
        plate = named_data_plate(model, data_plate)
        nesting, by_model, by_guide, plate = _probe(model, guide, probe, plate)
        values: dict[str, list[torch.Tensor]] = {name: [] for name in by_guide + by_model}
        for chunk in _chunks(args, n, batch_size):
            with poutine.block():
                guide_run = GuidePosterior(by_guide) if temperature == 0 else nullcontext()
                with guide_run:
                    guide_trace = poutine.trace(guide).get_trace(*chunk)
                trace = guide_trace
                if by_model:
                    program = infer_discrete(
                        GuideValues(guide_trace)(model),
                        first_available_dim=-(nesting + 1),
                        temperature=int(temperature),
                        strict_enumeration_warning=False,  # we checked there are such sites
                    )
                    trace = poutine.trace(program).get_trace(*chunk)
            for name, parts in values.items():
                site = (guide_trace if name in by_guide else trace).nodes[name]
                parts.append(_per_example(site, plate))
    return {name: torch.cat(parts) for name, parts in values.items()}


class GuideValues(Messenger):
    """Condition the model on the guide's draws of its latent sites (observed there), the
    model's own enumerated sites left to enumeration. Pyro's ``poutine.replay`` would mark a
    replayed site done, so :func:`~pyro.infer.infer_discrete`'s enumeration handler skips it,
    and a latent drawn given an enumerated site (z ~ p(z | c) of a mixture prior) then
    cannot be packed ("Invalid tensor shape"); as an observation it is a term of the
    contraction, p(c | x, z), and not a query to gather."""

    def __init__(self, trace: poutine.Trace) -> None:
        super().__init__()
        self.trace = trace

    def _pyro_sample(self, msg: dict) -> None:
        site = self.trace.nodes.get(msg["name"])
        if site is None or msg["is_observed"] or site["type"] != "sample":
            return
        if msg["infer"].get("enumerate") is None:
            msg["value"] = site["value"]
            msg["is_observed"] = True


class GuidePosterior(Messenger):
    """Set each named site of the guide to the mode of its distribution, argmax_y q(y | x),
    instead of drawing it; the guide's later sites are drawn given that value."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = set(names)

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] in self.names and not msg["is_observed"] and not msg["done"]:
            msg["value"] = mode(msg["fn"], msg["name"])
            msg["done"] = True


def mode(fn: Any, name: str = "?") -> torch.Tensor:
    """argmax_v fn.log_prob(v) over fn's enumerable support, per batch element:
    a value of shape batch_shape + event_shape (ties go to the first value)."""
    if not getattr(fn, "has_enumerate_support", False):
        raise ValueError(
            f"site {name!r} is enumerated by the guide but its distribution "
            f"{type(fn).__name__} has no enumerable support; enumerate only discrete sites"
        )
    support = fn.enumerate_support(expand=True)  # (V, *batch, *event)
    best = fn.log_prob(support).argmax(0)  # (*batch,)
    event = len(fn.event_shape)
    index = best.reshape((1,) + best.shape + (1,) * event).expand((1,) + support.shape[1:])
    return support.gather(0, index).squeeze(0)


def _probe(
    model: Callable, guide: Callable, args: Args, data_plate: str | None = None
) -> tuple[int, list[str], list[str], str]:
    """Trace the guide and the model replayed on it, for the first rows only and off the
    caller's random streams: the plate nesting (max -frame.dim over vectorized frames, as
    Pyro's ELBOs guess it), the sites the model enumerates (marked there, absent from the
    guide) and those the guide enumerates, each in program order, and the data plate's name.
    """
    with aside(grad=True):
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args))
        replayed = poutine.replay(model, trace=guide_trace)
        model_trace = prune_subsample_sites(poutine.trace(replayed).get_trace(*args))
    nesting = traced_nesting(model_trace, guide_trace)
    plate = find_data_plate(model_trace, _num_rows(args), data_plate, retracer(model, args))
    by_guide = [
        name
        for name, site in _latents(guide_trace)
        if site["infer"].get("enumerate") in ("parallel", "sequential")
    ]
    by_model = [
        name
        for name, site in _latents(model_trace)
        if name not in guide_trace.nodes and site["infer"].get("enumerate") is not None
    ]
    for name in by_model + by_guide:
        site = guide_trace.nodes[name] if name in by_guide else model_trace.nodes[name]
        if name in by_model and site["infer"]["enumerate"] == "sequential":
            raise ValueError(
                f"the model marks site {name!r} infer={{'enumerate': 'sequential'}}; "
                "infer_discrete enumerates in parallel: mark it infer={'enumerate': 'parallel'}"
            )
        if not any(frame.name == plate for frame in site["cond_indep_stack"]):
            raise ValueError(
                f"the enumerated site {name!r} is outside pyro.plate({plate!r}): it is not one "
                "value per example, and assign answers per example; sample it inside "
                f"pyro.plate({plate!r}, N)"
            )
    if not by_model and not by_guide:
        raise ValueError(_nothing_enumerated(model_trace, guide_trace))
    return nesting, by_model, by_guide, plate


def _latents(trace: poutine.Trace) -> Iterator[tuple[str, dict]]:
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"]:
            yield name, site


def _nothing_enumerated(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> str:
    discrete = [
        name
        for name, site in _latents(model_trace)
        if name not in guide_trace.nodes and getattr(site["fn"], "has_enumerate_support", False)
    ]
    if discrete:
        return (
            f"assign found no enumerated site; the model samples the discrete latent(s) "
            f"{discrete} without enumerating them: mark them infer={{'enumerate': "
            "'parallel'}} (or decorate the model with pyro.infer.config_enumerate) and leave "
            "them out of the guide"
        )
    return (
        "assign found no enumerated site: the model has no discrete latent outside the guide "
        "and the guide enumerates none; assign gives the posterior of discrete latents marked "
        "infer={'enumerate': 'parallel'}"
    )


def _num_rows(args: Args) -> int:
    rows = {a.shape[0] for a in args if torch.is_tensor(a) and a.dim() > 0}
    if len(rows) != 1:
        raise ValueError(
            "x must be a tensor (N, ...) or a tuple of tensors with the same number of rows N, "
            f"got rows {sorted(rows)}"
        )
    n = rows.pop()
    if n == 0:
        raise ValueError("x has no rows: there is nothing to assign")
    return n


def _rows(args: Args, start: int, stop: int) -> Args:
    return tuple(a[start:stop] if torch.is_tensor(a) and a.dim() > 0 else a for a in args)


def _chunks(args: Args, n: int, batch_size: int) -> Iterator[Args]:
    for start in range(0, n, batch_size):
        yield _rows(args, start, start + batch_size)


def _per_example(site: dict, plate: str) -> torch.Tensor:
    """A site's value with the data plate's dimension first: (B, ...).

    The value broadcasts to the site's batch_shape + event_shape (leading enumeration dims
    of size one, left by a single-valued site, are dropped)."""
    fn, value = site["fn"], site["value"]
    shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    extra = value.dim() - len(shape)
    if extra > 0:
        value = value.reshape(value.shape[extra:])
    value = value.expand(torch.broadcast_shapes(value.shape, shape))
    frame = next(f for f in site["cond_indep_stack"] if f.name == plate)
    return value.movedim(frame.dim - len(fn.event_shape), 0)


__all__ = ["GuidePosterior", "assign", "mode"]
