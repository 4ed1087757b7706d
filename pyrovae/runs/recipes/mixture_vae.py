"""``pyrovae train mixture-vae``: a VAE whose prior is a Gaussian mixture, for clustering.

The pair: :class:`~pyrovae.models.MixturePriorVAE` (c ~ Cat(pi), z ~ N(mu_c, Sigma_c),
x ~ p(x | decoder(z)); c enumerated, summed exactly by TraceEnum_ELBO) and the VAE's
:class:`~pyrovae.guides.GaussianEncoder` q(z | x).

A fresh run is initialised much as VaDE is (Jiang et al. 2017), each step optional:

1. ``--pretrain-epochs P`` epochs of the same encoder and decoder as an autoencoder
   (``--pretrain ae``: the code is the encoder's mean, objective log p(x | f(x)) +
   log N(f(x); 0, I)), as a denoising one (``--pretrain dae``, the default: the same
   objective with the encoder given x with a share ``--pretrain-noise`` of its values set to
   0) or as a VAE with a N(0, I) prior (``--pretrain vae``);
2. ``--init data-kmeans`` (the default): k-means (:func:`pyrovae.kmeans.kmeans`,
   ``--em-restarts`` k-means++ starts) on the training rows x themselves, component k the
   Gaussian of the mean codes of the rows in k-means cluster k
   (:meth:`~pyrovae.models.MixturePriorVAE.initialize_prior_from_clusters`); ``--init
   code-kmeans`` (DEC's start): the same with k-means on the encoder's mean codes; ``--init em``
   (VaDE's): the mixture over z set by EM (:func:`~pyrovae.models.fit_mixture`) on the
   encoder's mean codes of the training rows; ``--init random``: means drawn from N(0, I),
   unit variances, equal weights;
3. SVI trains everything, by default for 500 epochs at a learning rate of 2e-3 (the
   recipe's own :attr:`~pyrovae.runs.recipe.Recipe.defaults`; pretraining runs at the same
   constant rate, ``--lr-decay`` acts on the SVI epochs). ``--kl-warmup E`` weights the
   latent terms by (e + 1) / (E + 1) in the first E epochs. ``--weights fixed`` keeps
   pi = 1/K, ``--min-weight m`` keeps every pi_k >= m.

No label is used in training or in choosing anything. The defaults (200 epochs of
denoising pretraining, k-means on the rows, full covariances, 500 SVI epochs at 2e-3) are
those of issue 35's diagnosis on the digits (docs/benchmarks/models.md): there the
partition with the highest likelihood of the codes is not the digits' (EM on the codes,
VaDE's initialisation, starts at 63-71% accuracy), and SVI refines the partition it starts
from rather than finding another.

``evaluate`` adds to the IS log-likelihood and the ELBO (c summed inside every weight) the
clustering of the test rows by argmax_c p(c | E_q[z | x]) against their labels:
Hungarian-matched accuracy, adjusted Rand index, normalised mutual information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ...data import DataSplits
from ...diagnostics.clustering import clustering_scores
from ...diagnostics.mixture_vae_figures import predict_clusters, write_mixture_vae_figures
from ...guides import GaussianEncoder
from ...models import MixturePriorVAE
from ...models.mixture import COVARIANCE_TYPES
from ...models.mixture_vae import WEIGHTS
from ...procedures.mixture_vae import (
    INITIALISATIONS,
    PRETRAINING,
    clustering_metric,
    initialize_prior,
    pretrain,
)
from ..config import TrainConfig, setting
from ..recipe import Evaluation, Finished, Log, TrainingPlan
from ..record import Run
from .observed import ARCHITECTURE, KL_WARMUP, ObservedOptions, ObservedRecipe, warmup_clause
from .vae import network_kwargs


@dataclass(frozen=True)
class MixtureVAEOptions(ObservedOptions):
    architecture: str = ARCHITECTURE
    components: int = setting(10, "K, the number of clusters (mixture components over z)")
    covariance: str = setting(
        "full", "covariance of each component p(z | c)", choices=COVARIANCE_TYPES
    )
    weights: str = setting(
        "learned", "mixture weights pi: learned by SVI, or fixed at 1/K", choices=WEIGHTS
    )
    min_weight: float = setting(
        0.0, "floor on every learned weight pi_k (below 1/K), against collapsed clusters"
    )
    pretrain: str = setting(
        "dae",
        "how the encoder and decoder are pretrained before the mixture is initialised: as a "
        "denoising autoencoder (input values masked, see --pretrain-noise), an autoencoder "
        "(the encoder's mean as the code) or a VAE with a N(0, I) prior",
        choices=PRETRAINING,
    )
    pretrain_epochs: int = setting(200, "pretraining epochs (0: none)")
    pretrain_noise: float = setting(
        0.2, "--pretrain dae: the share of input values set to 0 at each step (masking noise)"
    )
    init: str = setting(
        "data-kmeans",
        "em: the mixture over z set by EM on the (pretrained) encoder's mean codes; "
        "data-kmeans: k-means on the training rows x, each component the Gaussian of the "
        "codes of one k-means cluster; code-kmeans: the same with k-means on the codes "
        "(DEC's start); random: means from N(0, I), unit variances, equal weights",
        choices=INITIALISATIONS,
    )
    em_restarts: int = setting(
        10, "k-means++ starts of the initialisation (EM or k-means); the best is kept"
    )
    kl_warmup: int = KL_WARMUP

    def validate(self) -> None:
        super().validate()
        checks = [
            (self.components >= 1, f"--components must be at least 1, got {self.components}"),
            (
                0 <= self.min_weight < 1 / max(self.components, 1),
                f"--min-weight must be in [0, 1/K) = [0, {1 / max(self.components, 1):.4g}), "
                f"got {self.min_weight}",
            ),
            (
                not (self.min_weight > 0 and self.weights == "fixed"),
                "--min-weight applies to learned weights; with --weights fixed every pi_k is 1/K",
            ),
            (
                self.pretrain_epochs >= 0,
                f"--pretrain-epochs must be >= 0, got {self.pretrain_epochs}",
            ),
            (
                0 <= self.pretrain_noise < 1,
                f"--pretrain-noise must be in [0, 1), got {self.pretrain_noise}",
            ),
            (self.em_restarts >= 1, f"--em-restarts must be at least 1, got {self.em_restarts}"),
            (self.kl_warmup >= 0, f"--kl-warmup must be >= 0, got {self.kl_warmup}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class MixtureVAERecipe(ObservedRecipe):
    """See the module docstring."""

    name = "mixture-vae"
    summary = (
        "mixture-prior VAE (VaDE): c ~ Cat(pi), z ~ N(mu_c, Sigma_c), x ~ p(x | decoder(z)); c "
        "summed out exactly; clusters unlabelled data (--components K)"
    )
    options = MixtureVAEOptions
    objective = "enum"
    #: Issue 35's digits diagnosis (docs/benchmarks/models.md).
    defaults = {"lr": 2e-3, "epochs": 500}

    def pair(self, config: TrainConfig) -> tuple[MixturePriorVAE, GaussianEncoder]:
        kwargs = network_kwargs(config)
        model = MixturePriorVAE(
            num_components=config.components,
            likelihood=config.likelihood,
            covariance=config.covariance,
            weights=config.weights,
            min_weight=config.min_weight,
            **kwargs,
        )
        return model, GaussianEncoder(**kwargs)

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        metric = clustering_metric(data.train_x, self.test_inputs(config, data), data.test_y)
        return TrainingPlan(
            data,
            (data.train_x,),
            metrics=[metric],
            kl_warmup=config.kl_warmup,
            record_start=True,
        )

    def initialize(
        self,
        config: TrainConfig,
        model: MixturePriorVAE,
        guide: GaussianEncoder,
        data: DataSplits,
        *,
        log: Log,
        progress: bool,
        save: Callable[[dict], None],
        state: dict | None = None,
    ) -> dict[str, float]:
        """Pretraining, then the mixture over z from the codes (see the module docstring):
        :func:`~pyrovae.procedures.mixture_vae.pretrain` and
        :func:`~pyrovae.procedures.mixture_vae.initialize_prior` with the run's settings.
        The pretraining state is saved after every epoch (``save``), so that ``--resume``
        continues a run interrupted while pretraining from its last epoch (``state``).
        Returns the pretraining's ``pretrain_seconds`` (its epochs' sum, across resumes) and
        final ``pretrain_objective`` (nats per example) for the history's epoch 0."""
        record: dict[str, float] = {}
        if config.pretrain_epochs > 0:
            if state is not None:
                done = state["epoch"]
                log(f"resuming from {done} of {config.pretrain_epochs} pretraining epochs")
            history = pretrain(
                model,
                guide,
                data.train_x,
                kind=config.pretrain,
                noise=config.pretrain_noise,
                epochs=config.pretrain_epochs,
                batch_size=config.batch_size,
                lr=config.lr,
                transform=self.transform(config),
                seed=config.seed,
                progress=progress,
                device=config.device,
                capture=config.capture,
                callbacks=[lambda trainer: save(trainer.state_dict())],
                state=state,
            )
            kind = {
                "dae": f"a denoising autoencoder ({config.pretrain_noise:g} of inputs masked)",
                "ae": "an autoencoder",
                "vae": "a VAE",
            }[config.pretrain]
            seconds = sum(r["seconds"] for r in history)
            record = {"pretrain_seconds": seconds, "pretrain_objective": history[-1]["train_elbo"]}
            log(
                f"pretrained {config.pretrain_epochs} epochs as {kind}: train objective "
                f"{history[-1]['train_elbo']:.2f} nats per example, {seconds:.0f} s"
            )
        report = initialize_prior(
            model,
            guide,
            data.train_x,
            init=config.init,
            restarts=config.em_restarts,
            seed=config.seed,
        )
        if config.init in ("data-kmeans", "code-kmeans"):
            rows = "training rows" if config.init == "data-kmeans" else "mean codes"
            log(
                f"mixture over z initialised from k-means on {report['codes']} {rows} "
                f"({config.em_restarts} k-means++ starts): log p(z) "
                f"{report['code_log_likelihood']:.2f} per code"
            )
        if config.init == "em":
            weights = ", ".join(f"{w:.3f}" for w in sorted(report["weights"], reverse=True))
            log(
                f"mixture over z initialised by EM on {report['codes']} mean codes "
                f"({config.em_restarts} k-means++ starts): log p(z) "
                f"{report['code_log_likelihood']:.2f} per code, weights {weights}"
            )
        return record

    def finish(self, run: Run) -> Finished:
        """The test clustering scores (with labels) into metrics.json and the log."""
        if run.data.test_y is None:
            return Finished()
        scores = _scores(run, run.test_inputs())
        message = (
            f"test clusters against labels (unused in training): accuracy "
            f"{100 * scores['accuracy']:.2f}%, ARI {scores['adjusted_rand_index']:.3f}, NMI "
            f"{scores['normalized_mutual_info']:.3f}"
        )
        return Finished(metrics={"test_clustering": scores}, messages=(message,))

    def units(self, config: TrainConfig) -> str:
        clause = "; ".join(
            c for c in ("c is summed out exactly", warmup_clause(config.kl_warmup)) if c
        )
        return (
            f"{clause}; test_clustering: argmax_c p(c | E_q[z | x]) on the test rows against "
            "their labels (Hungarian-matched accuracy, adjusted Rand index, NMI)"
        )

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        return write_mixture_vae_figures(
            run.model,
            run.guide,
            run.test_inputs(),
            out_dir,
            labels=run.data.test_y,
            image_shape=run.data.image_shape,
            history=run.history,
            seed=run.config.seed,
        )

    def evaluate(
        self, run: Run, x: torch.Tensor, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """The importance-sampled numbers (c summed inside every weight) and, with labels,
        the test clustering scores."""
        evaluation = super().evaluate(
            run, x, num_samples=num_samples, batch_size=batch_size, progress=progress
        )
        report = dict(evaluation.report)
        report["method"] = (
            "c summed exactly over the K clusters, z importance-sampled from q(z | x)"
        )
        if run.data.test_y is not None and len(x) <= len(run.data.test_y):
            report["test_clustering"] = _scores(run, x)
        return Evaluation(report, evaluation.result)

    def table(self, report: dict) -> list[tuple[str, str]]:
        rows = super().table(report)
        scores = report.get("test_clustering")
        if scores is not None:
            rows += [
                ("cluster accuracy (Hungarian)", f"{100 * scores['accuracy']:.2f}%"),
                ("adjusted Rand index", f"{scores['adjusted_rand_index']:.3f}"),
                ("normalised mutual information", f"{scores['normalized_mutual_info']:.3f}"),
            ]
        return rows


def _scores(run: Run, x: torch.Tensor) -> dict[str, float]:
    clusters = predict_clusters(run.model, run.guide, x)
    return clustering_scores(clusters, run.data.test_y[: len(x)])
