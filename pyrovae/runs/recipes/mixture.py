"""``pyrovae train gmm``: a Gaussian mixture fit by EM, K chosen by BIC (or by TraceEnum SVI).

For each K of ``--components``, :func:`~pyrovae.models.fit_mixture` runs EM (k-means++ seeds,
``--n-init`` restarts) on the training rows; the K with the lowest training BIC,
-2 sum_n log p(x_n) + p log N with p free parameters (Schwarz 1978), is kept. The run
directory then holds what an SVI run holds (``checkpoint.pt`` with the model's state dict,
``config.json`` with ``num_components`` set to the selected K, ``metrics.json``, figures),
and ``metrics.json`` records EM's log-likelihood per iteration, the sweep (log-likelihoods,
BIC, AIC per K) and, when the data have labels, the adjusted Rand index of the MAP clusters.
After every K the best model so far is saved, so an interrupted sweep keeps what it found.

``--inference svi`` trains the same program by SVI (``TraceEnum_ELBO``, z summed out).
Either way z is summed exactly, so ``evaluate`` computes log p(x) without sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data import DataSplits
from ...diagnostics.mixture_figures import adjusted_rand_index, write_mixture_figures
from ...models import GaussianMixture, empty_guide, fit_mixture
from ...models.mixture import COVARIANCE_TYPES
from ..comparison import PER_EXAMPLE, per_example
from ..config import OptionsBase, TrainConfig, setting
from ..recipe import Evaluation, Fitted, Recipe, TrainingPlan
from ..record import METRICS, Run, read_json
from .observed import positive_ints

#: What metrics.json and eval.json say their numbers are.
UNITS = (
    "log-likelihoods in nats per example, higher is better, exact (z summed out); BIC and AIC "
    "on the whole training set, lower is better"
)


@dataclass(frozen=True)
class MixtureOptions(OptionsBase):
    components: tuple[int, ...] = setting(
        (10,),
        "K, or several comma-separated (e.g. 2,4,8,16): each is fit and the lowest training "
        "BIC wins",
        parse=positive_ints("positive numbers of components, e.g. 10 or 2,4,8,16"),
    )
    covariance: str = setting(
        "full", "covariance of each component (tied: one shared by all)", choices=COVARIANCE_TYPES
    )
    inference: str = setting(
        "em",
        "em: closed-form EM with an enumerated E-step; svi: TraceEnum_ELBO by minibatch (uses "
        "--epochs, --batch-size, --lr)",
        choices=("em", "svi"),
    )
    n_init: int = setting(1, "EM restarts; the best is kept")
    max_iter: int = setting(100, "EM iterations per restart")
    tol: float = setting(
        1e-3, "EM stops once the mean log-likelihood gains less (nats per example)"
    )
    reg_covar: float = setting(1e-6, "added to the diagonal of every covariance")
    #: Resolved: the K that --components selected (by BIC).
    num_components: int | None = None

    def validate(self) -> None:
        super().validate()
        checks = [
            (
                bool(self.components) and all(k >= 1 for k in self.components),
                f"--components must be positive integers, got {list(self.components)}",
            ),
            (
                self.covariance in COVARIANCE_TYPES,
                f"--covariance must be full, tied, diag or spherical, got {self.covariance!r}",
            ),
            (
                self.inference in ("em", "svi"),
                f"--inference must be em or svi, got {self.inference!r}",
            ),
            (self.n_init >= 1, f"--n-init must be at least 1, got {self.n_init}"),
            (self.max_iter >= 1, f"--max-iter must be at least 1, got {self.max_iter}"),
            (self.tol >= 0, f"--tol must be >= 0, got {self.tol}"),
            (self.reg_covar >= 0, f"--reg-covar must be >= 0, got {self.reg_covar}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


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


class MixtureRecipe(Recipe):
    """z ~ Categorical(pi), x ~ N(mu_z, Sigma_z); see the module docstring."""

    name = "gmm"
    summary = (
        "Gaussian mixture: z ~ Categorical(pi), x ~ N(mu_z, Sigma_z); EM (default) or TraceEnum "
        "SVI; --components K1,K2,... picks K by BIC"
    )
    options = MixtureOptions
    objective = "enum"

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        return config, ["likelihood: Gaussian components, on the data as they are"]

    def pair(self, config: TrainConfig) -> tuple[GaussianMixture, Callable]:
        """K = ``num_components`` (or the first of ``components``), and the empty guide (z is
        enumerated). EM fits in float64: covariances of near-singular image data need it."""
        k = config.num_components or config.components[0]
        model = GaussianMixture(k, config.input_dim, config.covariance, reg_covar=config.reg_covar)
        return (model.double() if config.inference == "em" else model), empty_guide

    def refuse_resume(self, config: TrainConfig) -> str | None:
        if config.inference != "em":
            return None
        return (
            f"{config.out} holds an EM fit, which does not resume (its checkpoint is the best "
            "model of the sweep); start again with --overwrite, or --max-iter N to go longer"
        )

    def fit(
        self,
        config: TrainConfig,
        data: DataSplits,
        *,
        save: Callable[[Fitted], None],
        progress: bool,
        log: Callable[[str], None],
    ) -> Fitted | None:
        """EM for every K of ``components``, keeping the lowest BIC; ``save`` after each K."""
        if config.inference != "em":
            return None
        n = len(data.train_x)
        too_many = [k for k in config.components if k > n]
        if too_many:
            raise ValueError(
                f"--components {too_many} exceed the {n} training rows; a component needs at "
                "least one row"
            )
        sweep: list[dict] = []
        best = None  # (model, EM's log-likelihood per iteration, the sweep row) of the lowest BIC
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
                dtype=torch.float64,
                progress=progress,
            )
            row = {"components": k, **mixture_scores(model, data)}
            row.update(iterations=history.iterations, converged=history.converged)
            row["restarts"] = history.restarts
            sweep.append(row)
            log(_describe(row))
            if not history.converged:
                log(
                    f"  K={k}: EM stopped at --max-iter {config.max_iter} before the "
                    f"log-likelihood settled within --tol {config.tol}; raise --max-iter for a "
                    "converged fit"
                )
            if best is None or row["bic"] < best[2]["bic"]:
                best = (model, history.log_likelihood, row)
            fitted = _fitted(config, *best, sweep)
            save(fitted)
        if len(sweep) > 1:
            k = fitted.config.num_components
            log(f"selected K = {k} (lowest BIC of {[r['components'] for r in sweep]})")
        return fitted

    def closing(self, run: Run) -> str:
        if run.config.inference != "em":
            return super().closing(run)
        metrics = read_json(run.path / METRICS)
        return (
            f"done: K = {run.config.num_components}, train log p(x) "
            f"{metrics['train_log_likelihood']:.2f}, test log p(x) "
            f"{metrics['test_log_likelihood']:.2f} nats per example (exact); run saved in "
            f"{run.path}"
        )

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        return TrainingPlan(data, (data.train_x,))

    def initialize(
        self,
        config: TrainConfig,
        model: Callable,
        guide: Callable,
        data: DataSplits,
        *,
        log: Callable[[str], None],
        progress: bool,
        save: Callable[[dict], None],
        state: dict | None = None,
    ) -> dict[str, float] | None:
        model.initialize(data.train_x, seed=config.seed)  # k-means++ and one M-step, as EM
        return None

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        metrics = run.path / METRICS
        sweep = read_json(metrics).get("sweep", []) if metrics.exists() else []
        return write_mixture_figures(
            run.model,
            run.test_inputs(),
            out_dir,
            labels=run.data.test_y,
            image_shape=run.data.image_shape,
            history=run.history,
            sweep=sweep,
        )

    def draw(self, run: Run, n: int) -> tuple[np.ndarray, str]:
        draws, _ = run.model.sample(n)
        return draws.cpu().numpy(), f"{n} draws x ~ p(x)"

    def evaluate(
        self, run: Run, x: torch.Tensor, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """z summed out: log p(x) and the ELBO (equal to it) computed exactly, no sampling."""
        with torch.no_grad():
            scores = mixture_scores(run.model, run.data)
        report = {
            "units": "nats per example, higher is better",
            "method": "exact: the mixture's latent z is summed out, so the ELBO equals log p(x)",
            "num_examples": len(x),
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
        with torch.no_grad():
            exact = run.model.log_prob(x)  # (N,), z summed: standard error 0 by construction
        report[PER_EXAMPLE] = per_example(exact, torch.zeros_like(exact))
        return Evaluation(report)

    def table(self, report: dict) -> list[tuple[str, str]]:
        rows = [
            ("test log p(x), exact", f"{report['test_log_likelihood']:.3f}"),
            ("train log p(x), exact", f"{report['train_log_likelihood']:.3f}"),
            ("BIC (train, lower is better)", f"{report['bic']:.6g}"),
        ]
        if "test_adjusted_rand_index" in report:
            rows.append(("adjusted Rand index (test)", f"{report['test_adjusted_rand_index']:.3f}"))
        return rows


def _describe(row: dict) -> str:
    text = (
        f"K={row['components']}: train log p(x) {row['train_log_likelihood']:.3f}, test "
        f"{row['test_log_likelihood']:.3f} nats per example, BIC {row['bic']:.6g}, "
        f"{row['iterations']} EM iterations"
    )
    if "adjusted_rand_index" in row:
        text += f", test ARI {row['adjusted_rand_index']['test']:.3f}"
    return text


def _fitted(
    config: TrainConfig, model: GaussianMixture, em_curve: list[float], row: dict, sweep: list
) -> Fitted:
    """The best fit so far as the run records it, with the whole sweep in its metrics."""
    history = [
        {"iteration": i + 1, "train_log_likelihood": value} for i, value in enumerate(em_curve)
    ]
    metrics = {
        "units": UNITS,
        "inference": "em",
        "components": row["components"],
        "covariance": config.covariance,
        **{k: v for k, v in row.items() if k not in ("components", "restarts")},
        "history": history,
        "sweep": list(sweep),
    }
    config = config.with_options(num_components=row["components"])
    return Fitted(config, model, empty_guide, history, metrics, len(em_curve))
