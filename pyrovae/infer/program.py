"""What a (model, guide) pair is, read from one trace: checked at the first step of ``fit``.

pyrovae's contract for any Pyro program (DESIGN.md): the model observes its data inside
``pyro.plate("data", B)`` over the batch's B examples; every site the guide samples is a
latent site of the model; discrete latents the guide does not sample are summed out by
enumeration; latents outside the data plate are global and drawn by the guide. The model
may carry one optional attribute, ``latent_scales`` (:data:`~pyrovae.infer.scale.LATENT_SCALES`):
{latent site name: scale}, each such site scaled in model and guide while training, so its KL
term in the ELBO is multiplied by the scale (a beta-VAE's beta).
:func:`check_program` traces the pair once on a batch and refuses, with the fix, what
training would otherwise run with and :func:`~pyrovae.log_marginal` or the figures would
refuse (or get wrong) later. :func:`choose_objective` reads the objective from the program:
``TraceEnum_ELBO`` when a site is enumerated, ``Trace_ELBO`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

from ..errors import option
from ..rng import aside
from .passes import plate_nesting
from .plates import DATA, data_frame, find_data_plate, named_data_plate, retracer
from .sites import WeightedSites, classify_sites, mark_for_enumeration
from .weights import trace_pair

SUMMING_OBJECTIVES = ("enum", "iwae")


@dataclass
class ProgramReport:
    """The sites of a checked pair, by how inference treats them (site names)."""

    sites: WeightedSites
    #: How many plates deep the programs go (TraceEnum_ELBO's max_plate_nesting).
    nesting: int = 0
    #: The name of the plate over the examples (found, or named by the caller).
    data_plate: str = DATA
    #: Whether the program's data plate subsamples already (``pyro.plate(name, N,
    #: subsample=...)``, scaled by N / B by Pyro itself).
    subsampled: bool = False
    #: Marked ``infer={"enumerate": "parallel"}`` in the model, absent from the guide.
    model_enumerated: list[str] = field(default_factory=list)
    #: Enumerated by the guide (the semi-supervised VAE's class y).
    guide_enumerated: list[str] = field(default_factory=list)
    #: Discrete model latents the guide does not sample and the model does not mark:
    #: pyrovae enumerates them (:func:`~pyrovae.infer.program.enumerate_sites`) rather than sample
    #: them blindly.
    unmarked_discrete: list[str] = field(default_factory=list)

    @property
    def enumerated(self) -> list[str]:
        """Every site summed exactly: marked for enumeration in the model or in the guide,
        or discrete and unmarked (pyrovae marks those itself)."""
        return self.model_enumerated + self.guide_enumerated + self.unmarked_discrete


def check_program(
    model: Callable, guide: Callable, args: tuple, data_plate: str | None = None
) -> ProgramReport:
    """Trace the pair once on ``args`` (a batch: x is ``args[0]``, (B, ...)) and refuse
    what breaks the contract, naming the site or plate and the fix. One particle runs
    without a particle plate, as Pyro's own ELBOs run it, so plain indexing works.

    ``data_plate`` names the plate over the examples where several plates of the batch's size
    hold the observations (else it is found: :func:`~pyrovae.infer.plates.find_data_plate`;
    the model's ``data_plate`` attribute names it too).

    Raises:
        ValueError: no plate of the batch's size around every observation (or several,
            unnamed); a guide site the model lacks; an observation outside the data plate;
            an enumerated site outside the data plate; sequential enumeration; a global
            latent the guide does not sample; a model latent that the guide does not sample
            and that can be neither enumerated nor reparameterised (a Poisson count), whose
            gradient Pyro's ELBOs would silently leave out.
    """
    batch = args[0].shape[0]
    try:
        nesting = plate_nesting(model, guide, args)
    except ValueError as error:
        _explain_plate_error(error, batch)
        raise
    try:
        with aside():
            model_trace, guide_trace = trace_pair(model, guide, args, 1, nesting)
    except ValueError as error:
        _explain_plate_error(error, batch)
        raise
    named = named_data_plate(model, data_plate)
    plate = find_data_plate(model_trace, batch, named, retracer(model, args))
    for trace, who in ((model_trace, "model"), (guide_trace, "guide")):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            for frame in site["cond_indep_stack"]:
                if frame.name == plate and frame.size != batch:
                    raise ValueError(
                        f"the {who}'s pyro.plate({plate!r}) has size {frame.size} at site "
                        f"{name!r}, but the batch has {batch} examples: pyrovae passes "
                        "minibatches, so size the plate from the data, "
                        f"pyro.plate({plate!r}, x.shape[0])"
                    )
    sites = classify_sites(model_trace, guide_trace, allow_global=True, plate=plate)
    for name in sites.prior_drawn:
        fn = model_trace.nodes[name]["fn"]
        if not getattr(fn, "has_rsample", False):
            raise ValueError(
                f"the model samples {name!r} ({type(fn).__name__}) and the guide does not: "
                "it can be neither enumerated (no finite support) nor reparameterised, so "
                "Pyro's ELBOs would draw it from the prior and leave its gradient out (its "
                "parameters would not be learned). Sample it in the guide (e.g. a "
                "distribution over it with learnable parameters), or make it enumerable (a "
                "Categorical or Bernoulli with finite support, summed exactly)"
            )
    frame = data_frame(model_trace, plate)
    subsampled = frame.full_size is not None and frame.full_size != frame.size
    report = ProgramReport(sites, nesting, data_plate=plate, subsampled=subsampled)
    for name in sites.enumerated:
        if name in guide_trace.nodes:
            report.guide_enumerated.append(name)
        elif model_trace.nodes[name]["infer"].get("_auto_enumerated"):
            report.unmarked_discrete.append(name)
        else:
            report.model_enumerated.append(name)
    return report


def _explain_plate_error(error: ValueError, batch: int) -> None:
    """Pyro's shape error inside the data plate, said with pyrovae's fix."""
    if "inside plate('data')" in str(error):
        first_line = str(error).splitlines()[0]
        raise ValueError(
            f"{first_line}: the batch has {batch} examples, and pyrovae passes minibatches, "
            "so size the data plate from the data, pyro.plate('data', x.shape[0]), and "
            "shape each site's batch dims from x"
        ) from error


def choose_objective(objective: str | ELBO, report: ProgramReport) -> str | ELBO:
    """The objective to train with: ``"auto"`` becomes ``"enum"`` (TraceEnum_ELBO) when a
    site is enumerated and ``"elbo"`` (Trace_ELBO) otherwise. An objective that would
    sample an enumerated site, or weigh a global latent per example, is refused."""
    enumerated = report.enumerated
    if isinstance(objective, str) and objective == "auto":
        return "enum" if enumerated else "elbo"
    samples_sites = (isinstance(objective, str) and objective in ("elbo", "meanfield")) or (
        isinstance(objective, Trace_ELBO | TraceMeanField_ELBO)
    )
    if enumerated and samples_sites:
        raise ValueError(
            f"the program enumerates {enumerated} (marked for enumeration, enumerated by the "
            "guide, or discrete and absent from the guide), but this objective would sample "
            f"them instead of summing them: train with {option('objective', 'enum')} "
            f"(TraceEnum_ELBO), or {option('objective', 'auto')}, which picks it"
        )
    if report.sites.global_latents and isinstance(objective, str) and objective == "iwae":
        raise ValueError(
            f"the program has global latents {report.sites.global_latents} (outside the "
            f"data plate {report.data_plate!r}): the importance-weighted bound is per "
            "example and cannot weigh them; train with objective='elbo' or 'auto'"
        )
    return objective


def enumerate_sites(program: Callable, names: Collection[str]) -> Callable:
    """``program`` with the named sample sites marked ``infer={"enumerate": "parallel"}``
    (what ``config_enumerate`` does, for these sites only)."""
    if not names:
        return program
    marked = mark_for_enumeration(program, lambda name: name in names)

    def enumerated(*args, **kwargs):
        return marked(*args, **kwargs)

    enumerated.__wrapped__ = program  # type: ignore[attr-defined]
    return enumerated


__all__ = [
    "ProgramReport",
    "check_program",
    "choose_objective",
    "enumerate_sites",
]
