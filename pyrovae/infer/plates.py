"""The plates of a traced program that per-example numbers need: the data plate, found
rather than named, and the particle plate that vectorized particles run in.

**The data plate** (:func:`find_data_plate`) is the plate whose size is the batch's and that
holds every observation, whatever its name (``"data"``, ``"sequences"``, ``"z_minibatch"``);
a program with several such plates is refused naming them unless one is ``"data"`` or the
caller names it (``data_plate=``, or the model's ``data_plate`` attribute,
:func:`named_data_plate`). A *sequential* data plate (``for i in pyro.plate("data", N)``) has
no dim (:func:`data_frame`); :func:`data_plate_dim` refuses it where a dim is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from pyro import poutine

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


def find_data_plate(trace: poutine.Trace, batch_size: int, name: str | None = None) -> str:
    """The name of the model's data plate: the plate of size ``batch_size`` (B, the rows of
    x) that encloses every observed site. Several such plates are ambiguous: ``"data"`` is
    taken where it is one of them, else the program is refused naming them; ``name``
    settles it (and is checked to be such a plate).

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
    "in_plate",
    "named_data_plate",
]
