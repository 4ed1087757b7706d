"""Model comparison on held-out data with ArviZ: per-example log p(x) as ``az.compare`` takes it.

A fitted (model, guide) pair has no posterior draws of global parameters, so PSIS-LOO does
not apply (:data:`~pyrovae.diagnostics.arviz.NO_LOO`); but on *held-out* examples x_1..x_N the
quantity LOO estimates, the expected log predictive density, is estimated directly by

    elpd = sum_n log p(x_n),    se(elpd) = sqrt(N var_n log p(x_n)),

with log p(x_n) from :func:`~pyrovae.log_marginal` (importance-sampled, so each term is
biased low by the Jensen gap of its K draws, and exact where every latent is summed).
:func:`elpd` packs that as ArviZ 0.x's ``ELPDData`` (the object ``az.loo`` returns, pointwise),
so that ``az.compare({"vae": elpd(a), "iwae": elpd(b)})`` ranks the models and
``az.plot_compare`` draws them. Between two models on the *same* examples ArviZ's ``elpd_diff``
is sum_n (log p_a(x_n) - log p_b(x_n)) and its ``dse`` the paired standard error
sqrt(N var_n(log p_a(x_n) - log p_b(x_n))): the spread of the per-example differences, which
also carries each estimate's importance noise. Comparing models on different examples is
meaningless; ArviZ refuses different N, and ``pyrovae compare`` also checks the rows.

ArviZ 0.x's ``az.compare`` only takes the names ``loo`` or ``waic``, so the numbers are filed
under ``elpd_loo`` and ``loo_i``: read them as the held-out elpd, not a leave-one-out estimate.
``p_loo`` (an effective number of parameters, in-sample minus LOO) has no meaning here and is
NaN; ``pareto_k`` holds each example's importance-weight k-hat (left out where it is unknown
or not applicable, see :mod:`pyrovae.infer.proposals`), and ``warning`` is set when one
exceeds 0.7.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..infer.marginal import LogMarginal

#: Above this importance-weight k-hat an example's log p(x) is not reliable (ArviZ's good_k).
GOOD_K = 0.7


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz

    return arviz


def elpd(
    result: LogMarginal | np.ndarray | torch.Tensor | list[float],
    *,
    khat: np.ndarray | torch.Tensor | list[float | None] | None = None,
    num_samples: int | None = None,
):
    """Held-out elpd = sum_n log p(x_n) as an ArviZ ``ELPDData`` for ``az.compare``.

    Args:
        result: a :func:`~pyrovae.log_marginal` result on held-out examples, or their
            per-example log p(x) (N,) (e.g. an ``eval.json``'s ``per_example``).
        khat: per-example importance k-hat (N,) for an array ``result`` (None: unknown; a
            ``LogMarginal`` brings its own).
        num_samples: K, draws per example, for the record (a ``LogMarginal`` brings its own).

    Returns:
        ``ELPDData`` with ``elpd_loo`` = sum_n log p(x_n), ``se`` = sqrt(N var_n log p(x_n)),
        ``loo_i`` (N,) the per-example values (dim ``example``), ``pareto_k`` (N,) where every
        example has one, ``p_loo``
        NaN, ``n_data_points`` N, ``n_samples`` K, ``warning`` (a k-hat above 0.7),
        ``scale`` "log"; see the module docstring.

    Raises:
        ValueError: no examples, a non-finite log p(x), or a result with masked examples
            (a comparison needs every example).
    """
    az = _arviz()
    import xarray as xr

    if isinstance(result, LogMarginal):
        if result.masked is not None and bool(result.masked.any()):
            raise ValueError(
                "the log_marginal result leaves out examples (masked for non-finite weights): "
                "a comparison needs log p(x) of every held-out example; fix those examples or "
                "compare on the others by passing result.log_likelihood[~result.masked]"
            )
        values = result.log_likelihood.double().cpu().numpy()
        khat = result.khat.double().cpu().numpy()
        num_samples = result.num_samples
    else:
        # float64 throughout: a list of floats must not pass through torch's default float32.
        values = torch.as_tensor(result, dtype=torch.float64).cpu().numpy()
    values = values.reshape(-1)
    n = len(values)
    if n == 0 or not np.isfinite(values).all():
        raise ValueError(
            f"elpd needs a finite log p(x) for every held-out example, got {n} example(s) with "
            f"{int((~np.isfinite(values)).sum())} non-finite: evaluate them again"
        )
    if khat is None:
        k = np.full(n, np.nan)
    else:
        k = np.array([np.nan if v is None else float(v) for v in np.asarray(khat).tolist()])
    coords = {"example": np.arange(n)}
    pointwise = xr.DataArray(values, dims=["example"], coords=coords, name="loo_i")
    pareto_k = xr.DataArray(k, dims=["example"], coords=coords, name="pareto_k")
    with np.errstate(invalid="ignore"):
        warn = bool((k > GOOD_K).any())
    entries = {
        "elpd_loo": float(values.sum()),
        "se": math.sqrt(n * values.var()),
        "p_loo": math.nan,
        "n_samples": num_samples if num_samples is not None else 0,
        "n_data_points": n,
        "warning": warn,
        "loo_i": pointwise,
        "pareto_k": pareto_k,
        "scale": "log",
        "good_k": GOOD_K,
    }
    if np.isnan(k).any():  # unknown or not applicable: ArviZ would tabulate NaNs as k-hats
        del entries["pareto_k"]
    return az.ELPDData(data=list(entries.values()), index=list(entries))


__all__ = ["GOOD_K", "elpd"]
