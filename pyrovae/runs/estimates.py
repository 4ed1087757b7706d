"""The importance-sampled numbers of ``eval.json`` and their rows in the printed table.

One pass of K draws z_k ~ q(z | x) per test example gives both numbers: the ELBO estimate
mean_k log w_k and the log-likelihood estimate log mean_k w_k (with its standard error,
effective sample size and Pareto k-hat; :func:`pyrovae.infer.log_marginal`). Where the model
has an exact marginal (a ``log_prob(x)`` method, as factor analysis does) it is reported too.
Every number is per example, in nats, higher is better.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..infer import LogMarginal, log_marginal
from .inputs import Inputs, as_args, num_examples


def importance_report(
    model: Callable,
    guide: Callable,
    x: Inputs,
    *,
    num_samples: int,
    batch_size: int | None,
    progress: bool,
    device: str,
) -> tuple[dict, LogMarginal]:
    """``eval.json``'s numbers for the test inputs x (rows, or a tuple of the programs'
    arguments), and the :class:`LogMarginal` behind them."""
    result = log_marginal(
        model,
        guide,
        x,
        num_samples=num_samples,
        batch_size=batch_size,
        progress=progress,
        device=device,
    )
    summary = result.summary()
    report = {
        "units": "nats per example, higher is better",
        "num_examples": num_examples(x),
        "num_samples": num_samples,
        "proposal": "guide",
        # "log p(x)", or with global latents "log posterior predictive" (see log_marginal).
        "estimand": summary["estimand"],
        "test_elbo": summary["elbo"],
        "test_log_likelihood": summary["log_likelihood"],
        "test_log_likelihood_stderr": summary["log_likelihood_stderr"],
        "elbo_gap": summary["log_likelihood"] - summary["elbo"],
        "ess": {k[4:]: summary[k] for k in ("ess_mean", "ess_median", "ess_min")},
        "khat": {k[5:]: summary[k] for k in ("khat_mean", "khat_max", "khat_share_above_0.7")},
        # Which diagnostics are exact or do not apply, and why (pyrovae.infer.proposals).
        "proposal_kind": summary["proposal_kind"],
        "exact_examples": summary["exact_examples"],
    }
    for key in ("exact_why", "stderr_undefined_examples", "stderr_undefined_why"):
        if key in summary:
            report[key] = summary[key]
    if "khat_not_applicable" in summary:
        report["khat"]["not_applicable"] = summary["khat_not_applicable"]
    exact = getattr(model, "log_prob", None)
    if callable(exact):
        with torch.no_grad():
            report["test_log_likelihood_exact"] = float(exact(*as_args(x)).mean())
    return report, result


def importance_rows(report: dict) -> list[tuple[str, str]]:
    """The rows of the printed table for :func:`importance_report`'s numbers."""
    ll, se = report["test_log_likelihood"], report["test_log_likelihood_stderr"]
    rows = [
        ("test ELBO", f"{report['test_elbo']:.2f}"),
        (f"test log p(x), IS K={report['num_samples']}", f"{ll:.2f} ± {se:.2f}"),
    ]
    if "test_log_likelihood_exact" in report:
        rows.append(("test log p(x), exact", f"{report['test_log_likelihood_exact']:.2f}"))
    khat_share = report["khat"]["share_above_0.7"]
    n = report["num_examples"]
    rows += [
        ("ELBO gap (IS - ELBO)", f"{report['elbo_gap']:.2f}"),
        ("mean ESS", f"{report['ess']['mean']:.1f} of {report['num_samples']}"),
        (
            "k-hat > 0.7",
            "not applicable (discrete proposal)"
            if khat_share is None
            else f"{100 * khat_share:.1f}% of {n} examples",
        ),
    ]
    if report.get("exact_examples"):
        rows.append(("exact (every latent summed)", f"{report['exact_examples']} of {n} examples"))
    undefined = report.get("stderr_undefined_examples")
    if undefined:
        rows.append(("no standard error (tied draws)", f"{len(undefined)} of {n} examples"))
    return rows


def aligned(rows: list[tuple[str, str]], num_examples: int) -> str:
    """Rows of (name, value) as two aligned columns, with the units underneath."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append(f"(nats per example, over {num_examples} test examples)")
    return "\n".join(lines)
