"""What each kind of model changes in a run: the hooks of ``pyrovae train``, ``evaluate``,
``plot`` and ``sample``.

:mod:`pyrovae.run` and :mod:`pyrovae.evaluate` treat every model alike except at the hooks
of :class:`Family`:

- ``prepare``: settings resolved from the data (likelihood, classes) before the pair is built;
- ``fit_without_svi``: a family fitted by another algorithm (the mixture's EM) trains there;
- ``refuse_resume``: why a saved run cannot continue, if it cannot;
- ``setup``: the training data, the objective, per-epoch metrics and callbacks;
- ``initialize``: parameters of a fresh pair computed from the data;
- ``finish``: after the last epoch (select a checkpoint, extra numbers for metrics.json);
- ``units``: the family's sentence in metrics.json's note;
- ``loaded``: what a reloaded run needs beyond its checkpoint;
- ``figures``, ``draw``: what ``plot`` and ``sample`` write;
- ``exact_report``, ``add_to_report``: ``evaluate`` without sampling, or with more numbers.

The default :class:`Family` is any pair trained by SVI on unlabelled rows (vae);
:class:`AutoencoderFamily` (ae), :class:`FactoryFamily` (a user's ``module:function``),
:class:`MixtureFamily` (gmm) and :class:`SemiSupervisedFamily` (ssvae) override what
differs. :func:`family` looks one up by ``config.model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pyro.infer import TraceEnum_ELBO

from . import mixture_run, ssvae_run
from .config import TrainConfig
from .data import DataSplits
from .diagnostics import views, write_figures
from .likelihoods import check_support

if TYPE_CHECKING:
    from .run import Run

Log = Callable[[str], None]


def resolve_likelihood(config: TrainConfig, data: DataSplits) -> str:
    """Fill ``config.likelihood`` and ``config.binarize`` from the data; return an explanation.

    ``auto`` picks: Bernoulli for binary data; Bernoulli on dynamically binarized images for
    MNIST (the benchmark convention); the continuous Bernoulli for other data in [0, 1];
    a Gaussian otherwise.
    """
    unit = data.is_unit_interval
    if config.likelihood == "auto":
        if data.is_binary:
            config.likelihood, why = "bernoulli", "the data are binary"
        elif unit and data.name == "mnist":
            config.likelihood = "bernoulli"
            why = "MNIST grey levels are binarized dynamically, the benchmark convention"
        elif unit:
            config.likelihood = "continuous-bernoulli"
            why = (
                "the data take values in [0, 1] besides 0 and 1, where a Bernoulli is not a density"
            )
        else:
            config.likelihood, why = "gaussian", "the data are real-valued, outside [0, 1]"
    else:
        why = "as requested"
    if config.binarize == "auto":
        grey = config.likelihood == "bernoulli" and not data.is_binary
        config.binarize = "dynamic" if grey and unit else "none"
    if config.binarize == "dynamic":
        if config.likelihood != "bernoulli":
            raise ValueError("--binarize dynamic goes with --likelihood bernoulli")
        if not unit:
            raise ValueError(
                "--binarize dynamic needs values in [0, 1] (pixel intensities as probabilities); "
                "rescale the data first"
            )
        why += "; training images resampled each epoch, test images binarized once (seed 0)"
    else:
        check_support(config.likelihood, data.train_x)
        check_support(config.likelihood, data.test_x)
    return f"likelihood: {config.likelihood} ({why})"


@dataclass
class TrainingSetup:
    """What :class:`~pyrovae.infer.Trainer` is given, besides the pair and the settings."""

    #: The splits the run uses (e.g. with a validation split carved from the training rows).
    data: DataSplits
    #: The training data in any form :func:`~pyrovae.infer.batches.make_batches` accepts.
    train_data: Any
    #: An objective name of :data:`~pyrovae.infer.OBJECTIVES` or a ``pyro.infer.ELBO``.
    objective: Any
    metrics: list[Callable] = field(default_factory=list)
    callbacks: list[Callable] = field(default_factory=list)


class Family:
    """A pair trained by SVI on the unlabelled training rows, with the VAE's figures."""

    #: The objective the family always trains with (saved in config.json), or None: --objective.
    objective: str | None = None

    def prepare(self, config: TrainConfig, data: DataSplits, log: Log) -> None:
        log(resolve_likelihood(config, data))

    def refuse_resume(self, config: TrainConfig) -> str | None:
        return None

    def fit_without_svi(
        self, config: TrainConfig, *, overwrite: bool, progress: bool, log: Log, prepare: Callable
    ) -> Run | None:
        """Fit the run by an algorithm of the family's own and return it; None: use SVI."""
        return None

    def setup(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path, log: Log
    ) -> TrainingSetup:
        return TrainingSetup(data, (data.train_x,), config.objective)

    def initialize(self, config: TrainConfig, model: Callable, data: DataSplits) -> None:
        """Set a fresh model's parameters from the data (not on resume)."""

    def finish(self, run: Run, log: Log) -> dict:
        """After the last epoch; returns entries to add to metrics.json."""
        return {}

    def units(self, config: TrainConfig) -> str:
        """The family's clause of metrics.json's ``units`` note ("" for none)."""
        return ""

    def loaded(self, run: Run) -> None:
        """Complete a run rebuilt from its directory."""

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        return write_figures(
            run.model,
            run.guide,
            run.test_inputs(),
            out_dir,
            labels=run.data.test_y,
            image_shape=run.data.image_shape,
            history=run.history,
            seed=run.config.seed,
        )

    def draw(self, run: Run, n: int) -> tuple[np.ndarray, str]:
        """``n`` images from the model (flattened, (n, D)) and a title; seeded by the caller."""
        x = run.test_inputs()
        sites = views.find_sites(run.model, run.guide, (x[:8],))
        means = views.prior_means(run.model, (x[:1].expand(n, -1),), sites)
        return means.cpu().numpy(), f"{n} samples: E[x | z], z ~ p(z)"

    def exact_report(self, run: Run, x: torch.Tensor) -> dict | None:
        """``eval.json`` computed without sampling where the family can; None otherwise."""
        return None

    def add_to_report(self, run: Run, x: torch.Tensor, report: dict) -> None:
        """Add the family's numbers to the importance-sampling ``eval.json``."""


class AutoencoderFamily(Family):
    """The deterministic autoencoder: the VAE's run, with its 'ELBO' explained."""

    def units(self, config: TrainConfig) -> str:
        return "with a point-mass guide the 'ELBO' is log p(x, z = f(x)), not a bound"


class FactoryFamily(Family):
    """A user's ``module:function`` pair: as the default, but its model brings its own
    density, so the likelihood setting only decides how the data are prepared."""

    def prepare(self, config: TrainConfig, data: DataSplits, log: Log) -> None:
        resolved = resolve_likelihood(config, data)
        treatment = (
            "training images binarized dynamically, test images once (seed 0)"
            if config.binarize == "dynamic"
            else "the data used as they are"
        )
        log(
            f"data for the factory's own model: {treatment} ({resolved}; --likelihood and "
            "--binarize decide this, and a factory may read them from its config argument)"
        )


class MixtureFamily(Family):
    """The Gaussian mixture: EM by default, or TraceEnum SVI with z summed out."""

    objective = "enum"

    def prepare(self, config: TrainConfig, data: DataSplits, log: Log) -> None:
        config.likelihood, config.binarize = "gaussian", "none"
        log("likelihood: Gaussian components, on the data as they are")

    def refuse_resume(self, config: TrainConfig) -> str | None:
        if config.inference != "em":
            return None
        return (
            f"{config.out} holds an EM fit, which does not resume (its checkpoint is the best "
            "model of the sweep); start again with --overwrite, or --max-iter N to go longer"
        )

    def fit_without_svi(
        self, config: TrainConfig, *, overwrite: bool, progress: bool, log: Log, prepare: Callable
    ) -> Run | None:
        if config.inference != "em":
            return None
        return mixture_run.train_mixture(
            config, overwrite=overwrite, progress=progress, log=log, prepare=prepare
        )

    def setup(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path, log: Log
    ) -> TrainingSetup:
        return TrainingSetup(data, (data.train_x,), TraceEnum_ELBO(max_plate_nesting=1))

    def initialize(self, config: TrainConfig, model: Callable, data: DataSplits) -> None:
        model.initialize(data.train_x, seed=config.seed)  # k-means++ and one M-step, as EM

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        return mixture_run.write_mixture_figures(
            run.model,
            run.test_inputs(),
            out_dir,
            labels=run.data.test_y,
            image_shape=run.data.image_shape,
            history=run.history,
            sweep=mixture_run.read_sweep(run.path),
        )

    def draw(self, run: Run, n: int) -> tuple[np.ndarray, str]:
        draws, _ = run.model.sample(n)
        return draws.cpu().numpy(), f"{n} draws x ~ p(x)"

    def exact_report(self, run: Run, x: torch.Tensor) -> dict | None:
        return mixture_run.exact_report(run.model, run.data, len(x))


class SemiSupervisedFamily(Family):
    """The semi-supervised VAE: labelled and unlabelled batches, selection by validation
    accuracy (see :mod:`pyrovae.ssvae_run`)."""

    objective = "enum"

    def prepare(self, config: TrainConfig, data: DataSplits, log: Log) -> None:
        super().prepare(config, data, log)
        config.num_classes = ssvae_run.check_labels(data)

    def setup(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path, log: Log
    ) -> TrainingSetup:
        data = ssvae_run.with_validation(config, data)
        train_data = ssvae_run.training_data(config, data)
        valid_x = ssvae_run.valid_inputs(config, data).to(config.device)
        log(ssvae_run.describe_split(train_data, data))
        return TrainingSetup(
            data,
            train_data,
            ssvae_run.objective(config),
            metrics=[ssvae_run.validation_metric(guide, valid_x, data.valid_y)],
            callbacks=[ssvae_run.best_saver(out)],
        )

    def finish(self, run: Run, log: Log) -> dict:
        run.selected = ssvae_run.load_best(run.path, run.model, run.guide, run.config.device)
        test_accuracy = ssvae_run.accuracy(run.guide, run.test_inputs(), run.data.test_y)
        log(
            f"selected epoch {run.selected['epoch']} (validation accuracy "
            f"{100 * run.selected['valid_accuracy']:.2f}%): test accuracy "
            f"{100 * test_accuracy:.2f}%"
        )
        return {"selected": run.selected, "test_accuracy": test_accuracy}

    def units(self, config: TrainConfig) -> str:
        return (
            "y is summed out exactly where unlabelled; train_elbo is minus the training "
            f"objective (labelled and unlabelled batches, minus alpha = {config.alpha} times the "
            "cross-entropy of q(y | x) on labelled batches); valid_accuracy: argmax q(y | x) on "
            "the validation split; selected: the epoch with the best valid_accuracy (best.pt)"
        )

    def loaded(self, run: Run) -> None:
        run.data = ssvae_run.with_validation(run.config, run.data)
        if (run.path / ssvae_run.BEST).exists():
            run.selected = ssvae_run.load_best(run.path, run.model, run.guide, run.config.device)

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        return ssvae_run.write_ssvae_figures(
            run.model,
            run.guide,
            run.test_inputs(),
            run.data.test_y,
            out_dir,
            image_shape=run.data.image_shape,
            history=run.history,
            seed=run.config.seed,
        )

    def add_to_report(self, run: Run, x: torch.Tensor, report: dict) -> None:
        report.update(ssvae_run.classifier_report(run.model, run.guide, x, run.data.test_y))
        report["elbo_gap"] = report["test_log_likelihood"] - report["test_elbo"]
        if run.selected is not None:
            report["selected_epoch"] = run.selected["epoch"]
            report["valid_accuracy"] = run.selected["valid_accuracy"]


FAMILIES: dict[str, Family] = {
    "ae": AutoencoderFamily(),
    "gmm": MixtureFamily(),
    "ssvae": SemiSupervisedFamily(),
}
DEFAULT = Family()
FACTORY = FactoryFamily()


def family(model: str) -> Family:
    """The hooks of ``config.model``: the default ones for vae, :class:`FactoryFamily`'s for a
    ``module:function`` factory."""
    if model in FAMILIES:
        return FAMILIES[model]
    return FACTORY if ":" in model else DEFAULT
