"""Figures of a semi-supervised VAE: conditional generation, analogies, the accuracy curve
and the confusion matrix.

Like :mod:`pyrovae.diagnostics.figures`, the ``save_*`` functions take numpy arrays, write
one PNG atomically and return its path; no pyplot state. :func:`write_ssvae_figures` draws
them all from a fitted model and guide (a guide with ``predict(x)`` and ``encode(x, y)``, as
:class:`~pyrovae.guides.SSVAEGuide`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import figures
from .figures import _save, _show, subplots, tile


def save_class_grid(
    images: np.ndarray,
    path: str | Path,
    *,
    row_images: np.ndarray | None = None,
    title: str,
) -> Path:
    """Images (R, C, ch, H, W): row r holds one style, column c the class c. With
    ``row_images`` (R, ch, H, W) each row opens with the image its style came from."""
    rows, classes = images.shape[:2]
    grid = images
    if row_images is not None:
        grid = np.concatenate([row_images[:, None], images], axis=1)
    ncols = grid.shape[1]
    canvas = tile(grid.reshape(rows * ncols, *grid.shape[2:]), ncols)
    fig, ax = subplots(figsize=(0.55 * ncols + 0.6, 0.55 * rows + 0.9))
    _show(ax, canvas)
    h, w = images.shape[-2:]
    offset = 1 if row_images is not None else 0
    ax.set_xticks([(offset + c) * (w + 1) + w / 2 - 0.5 for c in range(classes)])
    ax.set_xticklabels([str(c) for c in range(classes)], fontsize=7)
    ax.set_xlabel("class y")
    if row_images is not None:
        ax.axvline(w + 0.5, color="tab:red", lw=1.0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_accuracy_curve(
    history: Sequence[dict], path: str | Path, classifier: str = "q(y | x)"
) -> Path:
    """Validation accuracy per epoch (and the training objective, on a second axis);
    ``classifier`` names the classifier in the title."""
    epochs = [r["epoch"] for r in history if r.get("valid_accuracy") is not None]
    accuracy = [100 * r["valid_accuracy"] for r in history if r.get("valid_accuracy") is not None]
    fig, ax = subplots(figsize=(5.2, 3.4))
    ax.plot(epochs, accuracy, color="tab:blue", marker="o", ms=2.5, label="validation accuracy")
    if accuracy:
        best = int(np.argmax(accuracy))
        ax.scatter([epochs[best]], [accuracy[best]], color="tab:red", zorder=3, s=18)
        ax.annotate(
            f"best {accuracy[best]:.2f}% (epoch {epochs[best]})",
            (epochs[best], accuracy[best]),
            textcoords="offset points",
            xytext=(-10, -14),
            fontsize=7,
            ha="right",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)", color="tab:blue")
    right = ax.twinx()
    train = [r.get("train_elbo") for r in history]
    right.plot([r["epoch"] for r in history], train, color="tab:grey", lw=1.0, alpha=0.8)
    right.set_ylabel("train objective (nats / example)", color="tab:grey")
    ax.set_title(f"{classifier} on held-out labels", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def save_confusion_matrix(
    counts: np.ndarray,
    path: str | Path,
    *,
    title: str,
    xlabel: str = "predicted class (argmax q(y | x))",
) -> Path:
    """The confusion matrix, each row normalised to the share of its true class, with counts."""
    counts = np.asarray(counts)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(counts)
    fig, ax = subplots(figsize=(0.42 * k + 2.2, 0.42 * k + 1.6))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=colour)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def predict(guide: Callable, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    """argmax q(y | x) for rows x (N, D), in batches: (N,)."""
    return torch.cat([guide.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(guide: Callable, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose most probable class under q(y | x) is the label."""
    return float((predict(guide, x) == y.to(x.device)).double().mean())


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
    classifier: str = "q(y | x)",
) -> list[Path]:
    """Figures of a fitted SSVAE on test rows x (N, D) with labels (N,): ``elbo.png``,
    ``accuracy.png``, ``confusion.png`` and, for images, ``conditional.png`` (rows: one
    z ~ N(0, I) each, columns: y = 0..C-1, E[x | z, y]) and ``analogies.png`` (rows: a test
    image, its style z = E[q(z | x, y_hat)] under the predicted class, then E[x | z, y] for
    every class y). ``classifier`` names the guide's classifier on the axes; the style of an
    image is the guide's ``encode(x, y)``."""
    out = Path(out_dir)
    written = []
    if history:
        written.append(figures.save_elbo_curves(history, out / "elbo.png", title="ELBO"))
        written.append(save_accuracy_curve(history, out / "accuracy.png", classifier))
    predictions = predict(guide, x).cpu().numpy()
    truth = labels.cpu().numpy()
    counts = confusion_matrix(truth, predictions, model.num_classes)
    share = float(np.trace(counts) / max(counts.sum(), 1))
    written.append(
        save_confusion_matrix(
            counts,
            out / "confusion.png",
            title=f"test accuracy {100 * share:.2f}% ({len(truth)} examples)",
            xlabel=f"predicted class (argmax {classifier})",
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
