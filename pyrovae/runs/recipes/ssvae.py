"""``pyrovae train ssvae``: the semi-supervised VAE (M2, Kingma et al. 2014).

- The data: a validation split carved from the training rows (seeded; kept apart for model
  selection, as in Kingma et al. 2014), then a class-balanced subset of ``--num-labels``
  training rows keeps its labels and the other training rows are used without them.
- The objective: :class:`~pyrovae.infer.SemiSupervisedELBO` with ``--alpha``.
- Each epoch: the accuracy of argmax q(y | x) on the validation rows, in the progress bar
  and ``metrics.json``; the model and guide with the best validation accuracy so far are
  saved to ``best.pt``, and that is the model ``evaluate``, ``plot`` and ``sample`` use.
- ``evaluate``: y summed exactly in every importance weight; the ELBO is TraceEnum_ELBO's
  (q(y | x) and one z per class); ``test_accuracy`` is the share of test examples whose
  argmax q(y | x) is the label.
- Figures: conditional generation, analogies, the accuracy curve, the confusion matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pyro.infer import TraceEnum_ELBO

from ...data import (
    DataError,
    DataSplits,
    SemiSupervisedData,
    binarize_fixed,
    class_count,
    split_labeled,
)
from ...diagnostics.ssvae_figures import accuracy, write_ssvae_figures
from ...guides import SSVAEGuide
from ...infer import SemiSupervisedELBO, Trainer, evaluate_elbo
from ...models import SSVAE
from ...procedures import ValidationSelection, validation_split
from ..config import MAX_INT, TrainConfig, parse_int, setting
from ..recipe import Evaluation, Finished, TrainingPlan
from ..record import CheckpointError, Run, load_checkpoint, save_checkpoint
from .observed import ObservedOptions, ObservedRecipe

#: The model and guide with the best validation accuracy (beside checkpoint.pt, the last).
BEST = "best.pt"


def labels(text: str) -> int | None:
    """``--num-labels``: a positive count, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a number of labelled examples or 'all', got {text!r}") from None
    if not 1 <= value <= MAX_INT:
        raise ValueError(f"give 1 to {MAX_INT} labelled examples or 'all', got {text!r}")
    return value


@dataclass(frozen=True)
class SemiSupervisedOptions(ObservedOptions):
    num_labels: int | None = setting(
        100,
        "training examples that keep their label, class-balanced and drawn with --seed (the "
        "others are used without it); 'all' keeps every label",
        parse=labels,
    )
    alpha: float = setting(
        50.0,
        "weight of the classification loss -log q(y | x) per labelled example (Kingma et al. "
        "2014, eq. 9)",
    )
    validation_size: int | None = setting(
        None,
        "training examples held out, with their labels, to select the epoch with the best "
        "accuracy (default: a sixth of the training set, at most 10,000)",
        parse=parse_int,
    )
    #: Resolved: C, from the labels.
    num_classes: int | None = None

    def validate(self) -> None:
        super().validate()
        if self.num_labels is not None and self.num_labels < 1:
            raise ValueError(f"--num-labels must be at least 1, got {self.num_labels}")
        if self.alpha < 0:
            raise ValueError(f"--alpha must be >= 0, got {self.alpha}")
        if self.validation_size is not None and self.validation_size < 1:
            raise ValueError(f"--validation-size must be at least 1, got {self.validation_size}")


def check_labels(data: DataSplits) -> int:
    """The number of classes; raises DataError when the data have no labels, or labels that
    are not the class indices 0..C-1 with an example of each (:func:`~pyrovae.data.class_count`)."""
    if data.train_y is None or data.test_y is None:
        raise DataError(
            f"{data.name} has no labels, and a semi-supervised model needs some: use a labelled "
            "dataset (digits, mnist, fashion-mnist) or a .npz/.csv file with a label column; for "
            "unlabelled data train a vae"
        )
    return int(class_count(data))


def with_validation(config: TrainConfig, data: DataSplits) -> DataSplits:
    """The data with a validation split: the dataset's own, or rows drawn from the training
    split with ``config.seed`` (:func:`~pyrovae.procedures.validation_split`)."""
    check_labels(data)
    if data.valid_x is not None and data.valid_y is not None:
        return data
    split = validation_split(data.train_x, data.train_y, config.validation_size, config.seed)
    return dataclasses.replace(
        data,
        train_x=split.train_x,
        train_y=split.train_y,
        valid_x=split.valid_x,
        valid_y=split.valid_y,
    )


def objective(config: TrainConfig) -> SemiSupervisedELBO:
    return SemiSupervisedELBO(alpha=config.alpha)


def valid_inputs(config: TrainConfig, data: DataSplits) -> torch.Tensor:
    """Validation rows as the model sees them (binarized once, seed 1, when training
    binarizes dynamically)."""
    x = data.valid_x
    return binarize_fixed(x, seed=1) if config.binarize == "dynamic" else x


def best_saver(out: Path) -> Callable[[Trainer, int, float], None]:
    """``on_improve`` of :class:`~pyrovae.procedures.ValidationSelection`: saves model and
    guide to ``best.pt`` with the epoch and its validation accuracy."""

    def save(trainer: Trainer, epoch: int, valid_accuracy: float) -> None:
        state = trainer.state_dict()
        best = {"model": state["model"], "guide": state["guide"]}
        save_checkpoint(out / BEST, {**best, "epoch": epoch, "valid_accuracy": valid_accuracy})

    return save


def load_best(path: Path, model: torch.nn.Module, guide: torch.nn.Module, device: str) -> dict:
    """Load ``best.pt`` into model and guide; returns its epoch and validation accuracy."""
    state = load_checkpoint(path / BEST, map_location=device)
    try:
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
        return {"epoch": int(state["epoch"]), "valid_accuracy": float(state["valid_accuracy"])}
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [repr(e)])[0]
        raise CheckpointError(
            f"{path / BEST} does not fit the model {path / 'config.json'} describes ({first}): "
            "it comes from another run or is damaged; restore this run's best.pt, or remove "
            "it to use the last epoch's checkpoint.pt"
        ) from None


def describe_split(train: SemiSupervisedData, data: DataSplits) -> str:
    """One line: how many labelled, unlabelled and validation rows the run uses."""
    counts = torch.bincount(train.labeled_y.cpu())
    low, high = int(counts.min()), int(counts.max())
    per_class = f"{low}" if low == high else f"{low}-{high}"
    unlabeled = 0 if train.unlabeled_x is None else len(train.unlabeled_x)
    return (
        f"labels: {len(train.labeled_y)} labelled training examples ({per_class} per class), "
        f"{unlabeled} unlabelled, {len(data.valid_x)} held out for validation"
    )


class SemiSupervisedRecipe(ObservedRecipe):
    """See the module docstring."""

    name = "ssvae"
    summary = (
        "semi-supervised VAE (M2): y ~ Cat(1/C), z ~ N(0, I), x ~ p(x | decoder(z, y)); y "
        "observed for --num-labels examples, summed out for the rest"
    )
    options = SemiSupervisedOptions
    objective = "enum"
    files = (BEST,)
    #: The classifier whose argmax is scored, as the run's notes and tables name it.
    classifier = "q(y | x)"
    #: How the importance weights of ``evaluate`` are drawn.
    importance_method = "y summed exactly over the classes, z importance-sampled from q(z | x, y)"

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        config, messages = super().resolve(config, data)
        return config.with_options(num_classes=check_labels(data)), messages

    def pair(self, config: TrainConfig) -> tuple[SSVAE, SSVAEGuide]:
        """M2 over ``num_classes`` classes and its guide: classifier q(y | x) and encoder
        q(z | x, y), MLPs with the widths of ``hidden_dims``."""
        kwargs = dict(
            input_dim=config.input_dim,
            num_classes=config.num_classes,
            latent_dim=config.latent_dim,
            hidden_dims=tuple(config.hidden_dims),
        )
        image_shape = tuple(config.image_shape) if config.image_shape else None
        model = SSVAE(likelihood=config.likelihood, image_shape=image_shape, **kwargs)
        return model, SSVAEGuide(**kwargs)

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        data = with_validation(config, data)
        train_data = split_labeled(data.train_x, data.train_y, config.num_labels, seed=config.seed)
        valid_x = valid_inputs(config, data).to(config.device)
        # The selected epoch is kept in best.pt (best_saver), not in memory.
        selection = ValidationSelection(
            guide, valid_x, data.valid_y, on_improve=best_saver(out), keep_state=False
        )
        return TrainingPlan(
            data,
            train_data,
            objective(config),
            metrics=[selection.metric],
            callbacks=[selection.keep],
            messages=(describe_split(train_data, data),),
        )

    def finish(self, run: Run) -> Finished:
        selected = load_best(run.path, run.model, run.guide, run.config.device)
        test_accuracy = accuracy(run.guide, run.test_inputs(), run.data.test_y)
        message = (
            f"selected epoch {selected['epoch']} (validation accuracy "
            f"{100 * selected['valid_accuracy']:.2f}%): test accuracy {100 * test_accuracy:.2f}%"
        )
        return Finished(
            notes={"selected": selected},
            metrics={"selected": selected, "test_accuracy": test_accuracy},
            messages=(message,),
        )

    def units(self, config: TrainConfig) -> str:
        return (
            "y is summed out exactly where unlabelled; train_elbo is minus the training "
            f"objective (labelled and unlabelled batches, minus alpha = {config.alpha} times the "
            f"cross-entropy of {self.classifier} on labelled batches); valid_accuracy: argmax "
            f"{self.classifier} on the validation split; selected: the epoch with the best "
            "valid_accuracy (best.pt)"
        )

    def reopen(self, run: Run) -> Run:
        notes = dict(run.notes)
        if (run.path / BEST).exists():
            notes["selected"] = load_best(run.path, run.model, run.guide, run.config.device)
        data = with_validation(run.config, run.data)
        return dataclasses.replace(run, data=data, notes=notes)

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        return write_ssvae_figures(
            run.model,
            run.guide,
            run.test_inputs(),
            run.data.test_y,
            out_dir,
            image_shape=run.data.image_shape,
            history=run.history,
            seed=run.config.seed,
            classifier=self.classifier,
        )

    def evaluate(
        self, run: Run, x: torch.Tensor, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """The importance-sampled numbers with y summed exactly, the ELBO with q(y | x)
        (TraceEnum_ELBO: the importance weights sum y exactly, so their mean is not the ELBO
        the model was trained on), and the test accuracy of argmax q(y | x)."""
        evaluation = super().evaluate(
            run, x, num_samples=num_samples, batch_size=batch_size, progress=progress
        )
        report = dict(evaluation.report)
        report["method"] = self.importance_method
        report["test_elbo"] = evaluate_elbo(
            run.model,
            run.guide,
            (x,),
            objective=TraceEnum_ELBO(max_plate_nesting=1),
            device=x.device,
        )
        report["test_accuracy"] = accuracy(run.guide, x, run.data.test_y)
        report["elbo_gap"] = report["test_log_likelihood"] - report["test_elbo"]
        selected = run.notes.get("selected")
        if selected is not None:
            report["selected_epoch"] = selected["epoch"]
            report["valid_accuracy"] = selected["valid_accuracy"]
        return Evaluation(report, evaluation.result)

    def table(self, report: dict) -> list[tuple[str, str]]:
        rows = super().table(report)
        row = (f"test accuracy, argmax {self.classifier}", f"{100 * report['test_accuracy']:.2f}%")
        return [*rows[:2], row, *rows[2:]]
