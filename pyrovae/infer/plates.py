"""The plates of a traced program that per-example numbers need: the data plate, found
rather than named, and the particle plate that vectorized particles run in.

**The data plate** (:func:`find_data_plate`) is the plate whose size is the batch's and that
holds every observation, whatever its name (``"data"``, ``"sequences"``, ``"z_minibatch"``).
Where several plates of the batch's size hold every observation, the model is traced again
on one row fewer (:func:`retracer`) and only the plates that shrink with the batch are kept:
a plate of fixed size (over the columns of x, say) that happens to equal the batch's rows is
never taken for the data plate, whatever the batch size. Several plates that all follow the
batch are refused naming them unless one is ``"data"`` or the caller names it
(``data_plate=``, or the model's ``data_plate`` attribute, :func:`named_data_plate`). A
*sequential* data plate (``for i in pyro.plate("data", N)``) has no dim
(:func:`data_frame`); :func:`data_plate_dim` refuses it where a dim is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine

from ..rng import aside

#: The name of the vectorized particle plate, left of the program's own plates.
PARTICLES = "num_particles_vectorized"
#: pyrovae's own name for the data plate, preferred where several plates could be it.
DATA = "data"
#: The model attribute that names its data plate where finding it is ambiguous.
DATA_PLATE = "data_plate"


def named_data_plate(model: Callable, data_plate: str | None = None) -> str | None:
    """The data plate a caller or the model names: ``data_plate``, else the model's
    ``data_plate`` attribute (seen through pyrovae's wrappers), else None (find it)."""
    if data_plate is not None:
        return data_plate
    program = model
    while program is not None:
        named = getattr(program, DATA_PLATE, None)
        if isinstance(named, str):
            return named
        program = getattr(program, "__wrapped__", None)
    return None


def _plates(site: dict) -> list:
    return [f for f in site["cond_indep_stack"] if f.name != PARTICLES]


def retracer(model: Callable, args: tuple) -> Callable[[int], poutine.Trace]:
    """``retrace(rows)``: a trace of ``model`` alone on the first ``rows`` rows of each
    argument with the batch's rows (B, the first tensor argument's; other arguments as they
    are), off the caller's random streams: what :func:`find_data_plate` compares plate sizes
    with."""

    def retrace(rows: int) -> poutine.Trace:
        batch = next(a.shape[0] for a in args if torch.is_tensor(a) and a.dim() > 0)
        fewer = tuple(
            a[:rows] if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == batch else a
            for a in args
        )
        with aside():
            return poutine.trace(model).get_trace(*fewer)

    return retrace


def find_data_plate(
    trace: poutine.Trace,
    batch_size: int,
    name: str | None = None,
    retrace: Callable[[int], poutine.Trace] | None = None,
) -> str:
    """The name of the model's data plate: the plate of size ``batch_size`` (B, the rows of
    x) that encloses every observed site. Where several do, ``retrace`` (:func:`retracer`)
    traces the model on B - 1 rows and only the plates of size B - 1 there are kept (the
    others have a fixed size that equals B by chance). Several left are ambiguous:
    ``"data"`` is taken where it is one of them, else the program is refused naming them;
    ``name`` settles it (and is checked to be such a plate).

    Raises:
        ValueError: no observed site; no plate of size B around every observation; several
            and none named; ``name`` not a plate around every observation.
    """
    observed = [
        site for site in trace.nodes.values() if site["type"] == "sample" and site["is_observed"]
    ]
    if not observed:
        raise ValueError(
            "the model observes nothing: pyrovae needs the data observed (obs=x) inside a "
            "plate over the batch's rows, e.g. with pyro.plate('data', x.shape[0]): "
            "pyro.sample('x', ..., obs=x)"
        )
    common: dict[str, object] | None = None
    for site in observed:
        frames = {f.name: f for f in _plates(site)}
        common = frames if common is None else {k: v for k, v in common.items() if k in frames}
    assert common is not None
    if name is not None:
        frame = common.get(name)
        if frame is None:
            raise ValueError(
                f"data_plate={name!r} does not enclose every observed site; the plates that "
                f"do are {sorted(common) or 'none'}: name one of them, or put every "
                f"observation inside pyro.plate({name!r}, x.shape[0])"
            )
        if frame.size != batch_size:  # type: ignore[attr-defined]
            raise ValueError(
                f"the data plate {name!r} has size {frame.size} but the batch has "  # type: ignore[attr-defined]
                f"{batch_size} rows: pyrovae passes minibatches, so size the plate from the "
                f"data, pyro.plate({name!r}, x.shape[0])"
            )
        return name
    candidates = [n for n, f in common.items() if f.size == batch_size]  # type: ignore[attr-defined]
    if len(candidates) > 1 and retrace is not None and batch_size > 1:
        following = _following(candidates, retrace, batch_size - 1)
        candidates = following or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        sized = [
            f.name
            for site in trace.nodes.values()
            if site["type"] == "sample"
            for f in _plates(site)
            if f.size == batch_size
        ]
        if sized:
            plate = DATA if DATA in sized else sized[0]
            outside = [s["name"] for s in observed if not in_plate(s, plate)]
            raise ValueError(
                f"the model observes {', '.join(map(repr, outside))} outside "
                f"pyro.plate({plate!r}): per-example log-likelihoods need every observation "
                "inside the data plate"
            )
        sizes = ", ".join(f"{n!r} ({f.size})" for n, f in common.items())  # type: ignore[attr-defined]
        raise ValueError(
            f"no plate of the batch's size {batch_size} encloses every observation (plates "
            f"around them: {sizes or 'none'}): pyrovae passes minibatches of rows, so observe "
            "the data inside a plate sized from them, with pyro.plate('data', x.shape[0]): "
            "pyro.sample(..., obs=x)"
        )
    if DATA in candidates:
        return DATA
    raise ValueError(
        f"the plates {candidates} all have the batch's size {batch_size} and enclose every "
        "observation, so which one holds the examples is ambiguous: name it, "
        f"data_plate={candidates[0]!r} (fit, log_marginal) or a model attribute "
        f"model.data_plate = {candidates[0]!r} (a CLI factory's model)"
    )


def _following(candidates: list[str], retrace: Callable[[int], poutine.Trace], rows: int):
    """The candidates that have size ``rows`` in a trace on ``rows`` rows (none where the
    model cannot run on them)."""
    try:
        smaller = retrace(rows)
    except Exception:  # a program that needs its whole batch: the sizes cannot be compared
        return []
    sizes = {
        f.name: f.size for site in smaller.nodes.values() if site["type"] == "sample"
        for f in _plates(site)
    }  # fmt: skip
    return [name for name in candidates if sizes.get(name) == rows]


def data_frame(trace: poutine.Trace, plate: str):
    """The data plate's frame (its dim, or None when it is sequential)."""
    for site in trace.nodes.values():
        if site["type"] == "sample":
            for frame in site["cond_indep_stack"]:
                if frame.name == plate:
                    return frame
    raise ValueError(f"the model has no plate {plate!r}")


def in_plate(site: dict, plate: str) -> bool:
    return any(f.name == plate for f in site["cond_indep_stack"])


def data_plate_dim(trace: poutine.Trace, plate: str = DATA) -> int:
    """The dim of the (vectorized) data plate ``plate``."""
    frame = data_frame(trace, plate)
    if frame.dim is None:
        raise ValueError(
            f"the data plate {plate!r} is sequential (for i in pyro.plate(...)); this "
            f"needs it vectorized: with pyro.plate({plate!r}, x.shape[0]): ..."
        )
    return frame.dim


__all__ = [
    "DATA",
    "DATA_PLATE",
    "PARTICLES",
    "data_frame",
    "data_plate_dim",
    "find_data_plate",
    "retracer",
    "in_plate",
    "named_data_plate",
]
