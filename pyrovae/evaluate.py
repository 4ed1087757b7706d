"""``pyrovae evaluate``: a trained run's test ELBO and importance-sampled log-likelihood.

One pass of K draws z_k ~ q(z | x) per test example gives both numbers: the ELBO
estimate mean_k log w_k and the log-likelihood estimate log mean_k w_k (with its
standard error, effective sample size and Pareto k-hat). Where the model has an exact
marginal (a ``log_prob(x)`` method, as factor analysis does) it is reported too.
For the semi-supervised VAE the class y is summed exactly in every weight, the ELBO is
TraceEnum_ELBO's (q(y | x) and one z per class), and ``test_accuracy`` is the share of test
examples whose argmax q(y | x) is the label.
A model whose every latent is enumerated (the Gaussian mixture, with its empty guide) has
nothing to sample: its log p(x) is computed exactly, and so is its ELBO, which equals it.
Every number is per example, in nats, higher is better. Figures: the k-hat of every
test example (``figures/khat.png``) and the weights of the worst one
(``figures/weights_worst.png``).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch

from .checkpoint import write_json
from .diagnostics.importance_figures import save_khat_plot, save_weights_plot
from .families import family
from .infer import log_marginal
from .infer.importance import initialised_cuda_devices
from .run import Run

Log = Callable[[str], None]


def evaluate(
    run: Run,
    *,
    num_samples: int = 1000,
    batch_size: int | None = None,
    progress: bool = True,
    log: Log = print,
    seed: int = 0,
) -> dict:
    """Estimate the run's test numbers, write ``RUN_DIR/eval.json`` and print a table.

    The draws are seeded (``seed``, recorded in eval.json), so evaluating a run twice gives
    the same numbers, and so does ``log_marginal(run.model, run.guide, run.test_inputs(),
    num_samples=K)`` after ``pyro.set_rng_seed(seed)``; the caller's random streams are left
    as they were."""
    with torch.random.fork_rng(devices=initialised_cuda_devices()):
        pyro.set_rng_seed(seed)
        report = _evaluate(run, num_samples, batch_size, progress, log)
    report["seed"] = seed
    write_json(run.path / "eval.json", report)
    return report


def _evaluate(run: Run, num_samples: int, batch_size: int | None, progress: bool, log: Log) -> dict:
    x = run.test_inputs()
    hooks = family(run.config.model)
    report = hooks.exact_report(run, x)
    if report is not None:
        log(format_table(report))
        return report
    result = log_marginal(
        run.model,
        run.guide,
        x,
        num_samples=num_samples,
        batch_size=batch_size,
        progress=progress,
        device=run.config.device,
    )
    summary = result.summary()
    report = {
        "units": "nats per example, higher is better",
        "num_examples": len(x),
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
    }
    hooks.add_to_report(run, x, report)
    exact = getattr(run.model, "log_prob", None)
    if callable(exact):
        with torch.no_grad():
            report["test_log_likelihood_exact"] = float(exact(x).mean())
    figures = run.path / "figures"
    save_khat_plot(result.khat.numpy(), figures / "khat.png")
    if result.worst_log_weights is not None:
        save_weights_plot(
            result.worst_log_weights.numpy(),
            figures / "weights_worst.png",
            example=result.worst_index,
            khat=float(result.khat[result.worst_index]),
        )
    log(format_table(report))
    return report


def format_table(report: dict) -> str:
    """The numbers of ``eval.json`` as a small aligned table."""
    if report["num_samples"] == 0:
        rows = [
            ("test log p(x), exact", f"{report['test_log_likelihood']:.3f}"),
            ("train log p(x), exact", f"{report['train_log_likelihood']:.3f}"),
            ("BIC (train, lower is better)", f"{report['bic']:.6g}"),
        ]
        if "test_adjusted_rand_index" in report:
            rows.append(("adjusted Rand index (test)", f"{report['test_adjusted_rand_index']:.3f}"))
        return _aligned(rows, report["num_examples"])
    ll, se = report["test_log_likelihood"], report["test_log_likelihood_stderr"]
    rows = [
        ("test ELBO", f"{report['test_elbo']:.2f}"),
        (f"test log p(x), IS K={report['num_samples']}", f"{ll:.2f} ± {se:.2f}"),
    ]
    if "test_log_likelihood_exact" in report:
        rows.append(("test log p(x), exact", f"{report['test_log_likelihood_exact']:.2f}"))
    if "test_accuracy" in report:
        rows.append(("test accuracy, argmax q(y | x)", f"{100 * report['test_accuracy']:.2f}%"))
    khat_share = report["khat"]["share_above_0.7"]
    rows += [
        ("ELBO gap (IS - ELBO)", f"{report['elbo_gap']:.2f}"),
        ("mean ESS", f"{report['ess']['mean']:.1f} of {report['num_samples']}"),
        ("k-hat > 0.7", f"{100 * khat_share:.1f}% of {report['num_examples']} examples"),
    ]
    return _aligned(rows, report["num_examples"])


def _aligned(rows: list[tuple[str, str]], num_examples: int) -> str:
    """Rows of (name, value) as two aligned columns, with the units underneath."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append(f"(nats per example, over {num_examples} test examples)")
    return "\n".join(lines)
