"""``pyrovae train gmm``: a Gaussian mixture fit by EM, K chosen by BIC, into a run directory.

For each K of ``--components`` :func:`~pyrovae.infer.fit_mixture` runs EM (k-means++ seeds,
``--n-init`` restarts) on the training rows; the K with the lowest training BIC,
-2 sum_n log p(x_n) + p log N with p free parameters (Schwarz 1978), is kept. The run
directory then holds what an SVI run holds (``checkpoint.pt`` with the model's state dict,
``config.json`` with ``num_components`` set to the selected K, ``metrics.json``, figures),
and ``metrics.json`` records EM's log-likelihood per iteration, the sweep (log-likelihoods,
BIC, AIC per K) and, when the data have labels, the adjusted Rand index of the MAP clusters.
After every K the best model so far is saved, so an interrupted sweep keeps what it found.

``pyrovae train gmm --inference svi`` takes the SVI path of :mod:`pyrovae.run` instead
(``TraceEnum_ELBO``, z summed out, the same program).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .builders import load_data
from .checkpoint import CHECKPOINT, read_json, save_checkpoint, write_json
from .config import TrainConfig
from .data import DataSplits
from .diagnostics import mixture_figures
from .infer import fit_mixture
from .models import GaussianMixture, empty_guide

Log = Callable[[str], None]

#: What metrics.json and eval.json say their numbers are.
UNITS = (
    "log-likelihoods in nats per example, higher is better, exact (z summed out); BIC and AIC "
    "on the whole training set, lower is better"
)


def adjusted_rand_index(assignments: torch.Tensor, labels: torch.Tensor | None) -> float | None:
    """Adjusted Rand index of the clusters against the labels (1: the same partition, about 0:
    chance; Hubert & Arabie 1985), or None without labels."""
    if labels is None:
        return None
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels.cpu().numpy(), assignments.cpu().numpy()))


def mixture_scores(model: GaussianMixture, data: DataSplits) -> dict:
    """Exact train and test log-likelihoods, BIC and AIC on the training rows, and the adjusted
    Rand index of the MAP assignments on each split (when labelled)."""
    train_x, test_x = data.train_x, data.test_x
    scores = {
        "train_log_likelihood": model.score(train_x),
        "test_log_likelihood": model.score(test_x),
        "bic": model.bic(train_x),
        "aic": model.aic(train_x),
        "num_parameters": model.num_parameters(),
    }
    ari = {
        "train": adjusted_rand_index(model.predict(train_x), data.train_y),
        "test": adjusted_rand_index(model.predict(test_x), data.test_y),
    }
    if ari["test"] is not None:
        scores["adjusted_rand_index"] = ari
    return scores


def exact_report(model: GaussianMixture, data: DataSplits, num_examples: int) -> dict:
    """``eval.json`` of a Gaussian mixture: z summed out, so log p(x) and the ELBO are exact."""
    with torch.no_grad():
        scores = mixture_scores(model, data)
    report = {
        "units": "nats per example, higher is better",
        "method": "exact: the mixture's latent z is summed out, so the ELBO equals log p(x)",
        "num_examples": num_examples,
        "num_samples": 0,
        "test_elbo": scores["test_log_likelihood"],
        "test_log_likelihood": scores["test_log_likelihood"],
        "test_log_likelihood_stderr": 0.0,
        "test_log_likelihood_exact": scores["test_log_likelihood"],
        "elbo_gap": 0.0,
        "train_log_likelihood": scores["train_log_likelihood"],
        "bic": scores["bic"],
        "aic": scores["aic"],
    }
    if "adjusted_rand_index" in scores:
        report["test_adjusted_rand_index"] = scores["adjusted_rand_index"]["test"]
    return report


def train_mixture(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Log = print,
    prepare: Callable[[TrainConfig, DataSplits], None],
):
    """Fit the mixture of ``config`` by EM for every K of ``config.components``; keep the K with
    the lowest BIC; write the run directory (see the module docstring). Returns the Run."""
    from .run import Run, plot, run_files

    out = Path(config.out)
    data = load_data(config)
    prepare(config, data)
    n = len(data.train_x)
    too_many = [k for k in config.components if k > n]
    if too_many:
        raise ValueError(
            f"--components {too_many} exceed the {n} training rows; a component needs at "
            "least one row"
        )
    dtype = torch.float64  # covariances of near-singular image data need the precision
    sweep: list[dict] = []
    best: tuple[GaussianMixture, list[float], dict] | None = None
    started = False
    for k in sorted(set(config.components)):
        model, history = fit_mixture(
            data.train_x,
            k,
            covariance=config.covariance,
            n_init=config.n_init,
            max_iter=config.max_iter,
            tol=config.tol,
            reg_covar=config.reg_covar,
            seed=config.seed,
            device=config.device,
            dtype=dtype,
            progress=progress,
        )
        row = {"components": k, **mixture_scores(model, data)}
        row.update(iterations=history.iterations, converged=history.converged)
        row["restarts"] = history.restarts
        sweep.append(row)
        log(_describe(row))
        if not history.converged:
            log(
                f"  K={k}: EM stopped at --max-iter {config.max_iter} before the log-likelihood "
                f"settled within --tol {config.tol}; raise --max-iter for a converged fit"
            )
        if best is None or row["bic"] < best[2]["bic"]:
            best = (model, history.log_likelihood, row)
        if not started:  # the first fit succeeded: only now touch the run directory
            if overwrite:
                for path in run_files(out):
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            started = True
        _save(out, config, *best, sweep)
    model, em_curve, row = best
    config.num_components = row["components"]
    if len(sweep) > 1:
        log(f"selected K = {row['components']} (lowest BIC of {[r['components'] for r in sweep]})")
    run = Run(out, config, model, empty_guide, data, _history(em_curve))
    if config.figures:
        paths = plot(run)
        log(f"figures: {', '.join(p.name for p in paths)} in {out / 'figures'}")
    log(
        f"done: K = {row['components']}, train log p(x) {row['train_log_likelihood']:.2f}, "
        f"test log p(x) {row['test_log_likelihood']:.2f} nats per example (exact); "
        f"run saved in {out}"
    )
    return run


def _describe(row: dict) -> str:
    text = (
        f"K={row['components']}: train log p(x) {row['train_log_likelihood']:.3f}, test "
        f"{row['test_log_likelihood']:.3f} nats per example, BIC {row['bic']:.6g}, "
        f"{row['iterations']} EM iterations"
    )
    if "adjusted_rand_index" in row:
        text += f", test ARI {row['adjusted_rand_index']['test']:.3f}"
    return text


def _history(em_curve: list[float]) -> list[dict]:
    return [{"iteration": i + 1, "train_log_likelihood": value} for i, value in enumerate(em_curve)]


def _save(
    out: Path,
    config: TrainConfig,
    model: GaussianMixture,
    em_curve: list[float],
    row: dict,
    sweep: list[dict],
) -> None:
    """The best model so far: checkpoint, then config.json and metrics.json, atomically each."""
    config.num_components = row["components"]
    history = _history(em_curve)
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "guide": {},
        "epoch": len(em_curve),
        "history": history,
        "config": config.to_dict(),
    }
    save_checkpoint(out / CHECKPOINT, state)
    write_json(out / "config.json", config.to_dict())
    metrics = {
        "units": UNITS,
        "inference": "em",
        "components": row["components"],
        "covariance": config.covariance,
        **{k: v for k, v in row.items() if k not in ("components", "restarts")},
        "history": history,
        "sweep": sweep,
    }
    write_json(out / "metrics.json", _finite(metrics))


def _finite(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ---- figures -------------------------------------------------------------------------------


def _projection(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """(centre (D,), basis (2, D), axis labels): the data's own axes if D == 2, else their
    top two principal components."""
    d = x.shape[1]
    if d == 1:
        raise ValueError("one-dimensional data have no 2-D view")
    if d == 2:
        return np.zeros(2), np.eye(2), ("x1", "x2")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(x)
    share = pca.explained_variance_ratio_ * 100
    labels = (f"PC1 ({share[0]:.0f}% var.)", f"PC2 ({share[1]:.0f}% var.)")
    return pca.mean_, pca.components_, labels


def write_mixture_figures(
    model: GaussianMixture,
    x: torch.Tensor,
    out_dir: str | Path,
    *,
    labels: torch.Tensor | None = None,
    image_shape: tuple[int, int, int] | None = None,
    history: list[dict] = (),
    sweep: list[dict] = (),
) -> list[Path]:
    """The mixture's figures for test rows x (N, D): the data in 2-D (themselves, or their top
    two principal components) with every component's 1- and 2-sigma ellipses (the exact
    marginal of N(mu_k, Sigma_k) under the linear projection); for images the component means
    and 64 draws from the model; the responsibilities of 200 test rows; the clusters against
    the labels with the adjusted Rand index; the BIC curve of a sweep; EM's log-likelihood
    per iteration (or the SVI curves)."""
    from .diagnostics.figures import save_elbo_curves, save_image_grid

    out = Path(out_dir)
    written: list[Path] = []
    x = x[:5000]
    with torch.no_grad():
        assignments = model.predict(x).cpu().numpy()
        weights = model.weights.double().cpu().numpy()
        means = model.loc.double().cpu().numpy()
        tril = model.scale_tril.double().expand(model.num_components, model.dim, model.dim)
        covariances = (tril @ tril.mT).cpu().numpy()
        responsibilities = model.responsibilities(x[:200]).cpu().numpy()
    xs = x.double().cpu().numpy()
    y = None if labels is None else labels[: len(x)].cpu().numpy()
    if model.dim >= 2:
        centre, basis, axis_labels = _projection(xs)
        written.append(
            mixture_figures.save_component_ellipses(
                (xs - centre) @ basis.T,
                assignments,
                (means - centre) @ basis.T,
                basis @ covariances @ basis.T,
                weights,
                out / "components.png",
                axis_labels=axis_labels,
                title=f"{model.num_components} components ({model.covariance} covariances) "
                f"over {len(xs)} test examples",
            )
        )
    if image_shape is not None:
        images = means.reshape(-1, *image_shape)
        written.append(mixture_figures.save_component_means(images, weights, out / "means.png"))
        draws, _ = model.sample(64)
        written.append(
            save_image_grid(
                draws.cpu().numpy().reshape(-1, *image_shape),
                out / "samples.png",
                ncols=8,
                title="x ~ p(x), clipped to [0, 1]",
            )
        )
    written.append(
        mixture_figures.save_responsibilities(
            responsibilities, out / "responsibilities.png", labels=None if y is None else y[:200]
        )
    )
    if y is not None:
        ari = adjusted_rand_index(torch.as_tensor(assignments), torch.as_tensor(y))
        written.append(
            mixture_figures.save_cluster_table(
                assignments, y, model.num_components, out / "clusters.png", ari=ari
            )
        )
    if len(sweep) > 1:
        written.append(mixture_figures.save_bic_curve(sweep, model.num_components, out / "bic.png"))
    if history and "train_log_likelihood" in history[0]:
        curve = [row["train_log_likelihood"] for row in history]
        written.append(mixture_figures.save_em_curve(curve, out / "em.png"))
    elif history:
        written.append(
            save_elbo_curves(history, out / "elbo.png", title="ELBO = log p(x) (z summed out)")
        )
    return written


def read_sweep(run_dir: Path) -> list[dict]:
    """The sweep recorded in a run's metrics.json (empty for SVI runs)."""
    path = run_dir / "metrics.json"
    return read_json(path).get("sweep", []) if path.exists() else []
