"""``pyrovae train ssvae``: what a semi-supervised run adds to an SVI run.

- The data: a validation split carved from the training rows (seeded; kept apart for model
  selection, as in Kingma et al. 2014), then a class-balanced subset of ``--num-labels``
  training rows keeps its labels and the other training rows are used without them.
- The objective: :class:`~pyrovae.infer.SemiSupervisedELBO` with ``--alpha``.
- Each epoch: the accuracy of argmax q(y | x) on the validation rows, in the progress bar
  and ``metrics.json``; the model and guide with the best validation accuracy so far are
  saved to ``best.pt``, and that is the model ``evaluate``, ``plot`` and ``sample`` use.
- Figures: conditional generation, analogies, the accuracy curve, the confusion matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pyro.infer import TraceEnum_ELBO

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import DataError, DataSplits, binarize_fixed
from .diagnostics import figures
from .diagnostics.ssvae_figures import (
    confusion_matrix,
    save_accuracy_curve,
    save_class_grid,
    save_confusion_matrix,
)
from .infer import (
    SemiSupervisedData,
    SemiSupervisedELBO,
    Trainer,
    evaluate_elbo,
    split_labeled,
)

#: The model and guide with the best validation accuracy (beside checkpoint.pt, the last).
BEST = "best.pt"


def check_labels(data: DataSplits) -> int:
    """The number of classes; raises DataError when the data have no labels."""
    if data.train_y is None or data.test_y is None:
        raise DataError(
            f"{data.name} has no labels, and the semi-supervised VAE needs some: use a labelled "
            "dataset (digits, mnist, fashion-mnist) or a .npz/.csv file with a label column; for "
            "unlabelled data train a vae"
        )
    return int(data.num_classes)


def validation_size(config: TrainConfig, num_train: int) -> int:
    """``--validation-size``, or by default a sixth of the training rows, at most 10,000 (the
    50,000 / 10,000 split of MNIST in Kingma et al. 2014)."""
    size = config.validation_size if config.validation_size is not None else num_train // 6
    if config.validation_size is None:
        size = min(size, 10_000)
    if not 1 <= size < num_train:
        raise ValueError(
            f"--validation-size {size} must be between 1 and the {num_train - 1} training rows "
            "that leave one to train on"
        )
    return size


def with_validation(config: TrainConfig, data: DataSplits) -> DataSplits:
    """The data with a validation split: the dataset's own, or rows drawn from the training
    split with ``config.seed``."""
    check_labels(data)
    if data.valid_x is not None and data.valid_y is not None:
        return data
    n = len(data.train_x)
    order = np.random.default_rng(config.seed).permutation(n)
    size = validation_size(config, n)
    valid = torch.as_tensor(np.sort(order[:size]))
    train = torch.as_tensor(np.sort(order[size:]))
    return dataclasses.replace(
        data,
        train_x=data.train_x[train],
        train_y=data.train_y[train],
        valid_x=data.train_x[valid],
        valid_y=data.train_y[valid],
    )


def training_data(config: TrainConfig, data: DataSplits) -> SemiSupervisedData:
    """The labelled subset (class-balanced, drawn with ``config.seed``) and the other rows."""
    return split_labeled(data.train_x, data.train_y, config.num_labels, seed=config.seed)


def objective(config: TrainConfig) -> SemiSupervisedELBO:
    return SemiSupervisedELBO(alpha=config.alpha)


def valid_inputs(config: TrainConfig, data: DataSplits) -> torch.Tensor:
    """Validation rows as the model sees them (binarized once, seed 1, when training
    binarizes dynamically)."""
    x = data.valid_x
    return binarize_fixed(x, seed=1) if config.binarize == "dynamic" else x


@torch.no_grad()
def predict(guide: Callable, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    """argmax q(y | x) for rows x (N, D), in batches: (N,)."""
    return torch.cat([guide.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(guide: Callable, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose most probable class under q(y | x) is the label."""
    return float((predict(guide, x) == y.to(x.device)).double().mean())


def classifier_report(
    model: Callable, guide: Callable, x: torch.Tensor, labels: torch.Tensor
) -> dict:
    """``evaluate``'s numbers for the semi-supervised VAE on test rows x (N, D): the test
    accuracy of argmax q(y | x), and the ELBO with q(y | x) (TraceEnum_ELBO, y summed over
    the classes): the importance weights sum y exactly, so their mean is not the ELBO the
    model was trained on."""
    return {
        "method": "y summed exactly over the classes, z importance-sampled from q(z | x, y)",
        "test_elbo": evaluate_elbo(
            model, guide, (x,), objective=TraceEnum_ELBO(max_plate_nesting=1), device=x.device
        ),
        "test_accuracy": accuracy(guide, x, labels),
    }


def validation_metric(guide: Callable, x: torch.Tensor, y: torch.Tensor) -> Callable:
    """A :class:`~pyrovae.infer.Trainer` metric: ``{"valid_accuracy": ...}``."""

    def metric(trainer: Trainer) -> dict:
        return {"valid_accuracy": accuracy(guide, x, y)}

    return metric


def best_saver(out: Path) -> Callable[[Trainer], None]:
    """A callback that saves model and guide to ``best.pt`` whenever the validation accuracy
    beats every earlier epoch's (ties: the earlier epoch stays)."""

    def save(trainer: Trainer) -> None:
        history = trainer.history
        current = history[-1]["valid_accuracy"]
        if all(current > r["valid_accuracy"] for r in history[:-1]):
            state = trainer.state_dict()
            save_checkpoint(
                out / BEST,
                {
                    "model": state["model"],
                    "guide": state["guide"],
                    "epoch": trainer.epoch,
                    "valid_accuracy": current,
                },
            )

    return save


def load_best(path: Path, model: torch.nn.Module, guide: torch.nn.Module, device: str) -> dict:
    """Load ``best.pt`` into model and guide; returns its epoch and validation accuracy."""
    state = load_checkpoint(path / BEST, map_location=device)
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    return {"epoch": state["epoch"], "valid_accuracy": state["valid_accuracy"]}


def write_ssvae_figures(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path,
    *,
    image_shape: tuple[int, int, int] | None,
    history: list[dict],
    seed: int = 0,
) -> list[Path]:
    """Figures of a fitted SSVAE on test rows x (N, D) with labels (N,): ``elbo.png``,
    ``accuracy.png``, ``confusion.png`` and, for images, ``conditional.png`` (rows: one
    z ~ N(0, I) each, columns: y = 0..C-1, E[x | z, y]) and ``analogies.png`` (rows: a test
    image, its style z = E[q(z | x, y_hat)] under the predicted class, then E[x | z, y] for
    every class y)."""
    out = Path(out_dir)
    written = []
    if history:
        written.append(figures.save_elbo_curves(history, out / "elbo.png", title="ELBO"))
        written.append(save_accuracy_curve(history, out / "accuracy.png"))
    predictions = predict(guide, x).cpu().numpy()
    truth = labels.cpu().numpy()
    counts = confusion_matrix(truth, predictions, model.num_classes)
    share = float(np.trace(counts) / max(counts.sum(), 1))
    written.append(
        save_confusion_matrix(
            counts,
            out / "confusion.png",
            title=f"test accuracy {100 * share:.2f}% ({len(truth)} examples)",
        )
    )
    if image_shape is None:
        return written
    c = model.num_classes
    classes = torch.arange(c, device=x.device)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        z = torch.randn(8, 1, model.latent_dim, device=x.device)
        grid = model.generate(z.expand(8, c, -1), classes.expand(8, c))
        written.append(
            save_class_grid(
                grid.reshape(8, c, *image_shape).cpu().numpy(),
                out / "conditional.png",
                title="E[x | z, y]: one z ~ N(0, I) per row, y = 0..C-1 across",
            )
        )
        rows = _one_per_class(labels, 8)
        sources = x[rows]
        styles, _ = guide.encode(sources, guide.predict(sources))
        grid = model.generate(styles[:, None].expand(-1, c, -1), classes.expand(len(rows), c))
        written.append(
            save_class_grid(
                grid.reshape(len(rows), c, *image_shape).cpu().numpy(),
                out / "analogies.png",
                row_images=sources.reshape(len(rows), *image_shape).cpu().numpy(),
                title="Analogies: the style z of each test image (left), every class y",
            )
        )
    return written


def _one_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` test rows, of different classes where possible."""
    labels = labels.cpu()
    firsts = [int(torch.nonzero(labels == c)[0]) for c in labels.unique()]
    taken = set(firsts)
    rest = [i for i in range(len(labels)) if i not in taken]
    return torch.as_tensor((firsts + rest)[:count])


def describe_split(train: SemiSupervisedData, data: DataSplits) -> str:
    """One line: how many labelled, unlabelled and validation rows the run uses."""
    counts = torch.bincount(train.labeled_y.cpu())
    per_class = (
        f"{int(counts.min())}"
        if counts.min() == counts.max()
        else f"{int(counts.min())}-{int(counts.max())}"
    )
    unlabeled = 0 if train.unlabeled_x is None else len(train.unlabeled_x)
    return (
        f"labels: {len(train.labeled_y)} labelled training examples ({per_class} per class), "
        f"{unlabeled} unlabelled, {len(data.valid_x)} held out for validation"
    )
