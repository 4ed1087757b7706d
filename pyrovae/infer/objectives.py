"""Pyro's variational objectives by name.

All are Monte Carlo estimates of (minus) the evidence lower bound
ELBO(x) = E_q[log p(x, z) - log q(z | x)] <= log p(x); they differ in how:

- ``"auto"`` (:func:`~pyrovae.fit`'s default): ``"enum"`` when the program enumerates a
  site, ``"elbo"`` otherwise (:func:`~pyrovae.infer.program.choose_objective`).
- ``"elbo"``: :class:`~pyro.infer.Trace_ELBO`, the score-function/reparameterised estimator.
- ``"meanfield"``: :class:`~pyro.infer.TraceMeanField_ELBO`, analytic KL terms where the
  prior and guide allow it (lower variance, same expectation).
- ``"enum"``: :class:`~pyro.infer.TraceEnum_ELBO`, sums enumerated discrete latents exactly.
- ``"iwae"``: :class:`~pyrovae.infer.iwae.IWAE_ELBO`, the importance-weighted bound
  L_K >= ELBO with K = ``num_particles`` (optionally with DReG gradients).
"""

from __future__ import annotations

from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from .iwae import IWAE_ELBO

#: The objectives by name (``--objective``), each an ELBO class taking Pyro's arguments.
OBJECTIVES = {
    "elbo": Trace_ELBO,
    "meanfield": TraceMeanField_ELBO,
    "enum": TraceEnum_ELBO,
    "iwae": IWAE_ELBO,
}


def make_objective(
    objective: str | ELBO = "elbo",
    num_particles: int = 1,
    dreg: bool = False,
    max_plate_nesting: int | None = None,
    vectorize: bool = True,
) -> ELBO:
    """An ELBO instance from a name in :data:`~pyrovae.infer.objectives.OBJECTIVES`, or the instance
    given; ``max_plate_nesting`` (known from a checked program) spares Pyro's guess.
    ``vectorize`` False runs several particles one after another (Pyro's
    ``vectorize_particles=False``), for programs that cannot take a particle dimension."""
    if isinstance(objective, ELBO):
        return objective
    if objective == "auto":
        raise ValueError(
            "objective 'auto' is read from a program: pass it to fit / Trainer, or resolve it "
            "with pyrovae.infer.program.choose_objective(objective, check_program(...))"
        )
    if objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)} "
            "or pass a pyro.infer.ELBO instance"
        )
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    if objective == "iwae":
        if not vectorize and num_particles > 1:
            raise ValueError(
                "the importance-weighted bound weighs its particles in one vectorized plate, and "
                "this program cannot run in one (plain indexing such as locs[assignment]); index "
                "with pyro.ops.indexing.Vindex, or train with objective='elbo' or 'enum'"
            )
        return IWAE_ELBO(num_particles=num_particles, dreg=dreg)
    if dreg:
        raise ValueError("dreg=True goes with the 'iwae' objective")
    nesting = {} if max_plate_nesting is None else {"max_plate_nesting": max_plate_nesting}
    return OBJECTIVES[objective](
        num_particles=num_particles, vectorize_particles=vectorize and num_particles > 1, **nesting
    )


def evaluation_objective(objective: str | ELBO, max_plate_nesting: int | None = None) -> ELBO:
    """The objective a test ELBO is measured with: the same family with one particle, and
    the plain ELBO (Trace_ELBO) for an IWAE-trained pair, so runs with different objectives
    compare. An ELBO that adds training terms to a bound (the semi-supervised ELBO's
    classification term) says which bound it reports by an ``evaluation_elbo()`` method."""
    if isinstance(objective, IWAE_ELBO) or objective == "iwae":
        return Trace_ELBO()
    evaluation_elbo = getattr(objective, "evaluation_elbo", None)
    if callable(evaluation_elbo):
        return evaluation_elbo()
    return make_objective(objective, max_plate_nesting=max_plate_nesting)
