"""Figures of a semi-supervised VAE, from arrays: conditional generation, analogies,
the accuracy curve and the confusion matrix.

Like :mod:`pyrovae.diagnostics.figures`, every function takes numpy arrays, writes one
PNG atomically and returns its path; no pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def save_accuracy_curve(history: Sequence[dict], path: str | Path) -> Path:
    """Validation accuracy per epoch (and the training objective, on a second axis)."""
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
    ax.set_title("q(y | x) on held-out labels", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def save_confusion_matrix(counts: np.ndarray, path: str | Path, *, title: str) -> Path:
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
    ax.set_xlabel("predicted class (argmax q(y | x))")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return _save(fig, path)
