"""Matplotlib figures from arrays: image grids, traversals, latent maps, ELBO curves.

Every function takes numpy arrays, writes one PNG atomically (temp file, then
rename) and returns its path. Images are (N, C, H, W) with C in {1, 3} and values
in [0, 1] (they are clipped); grey images are drawn with black background digits
as in the usual MNIST figures.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..atomic import atomic_write

# Figures are built with matplotlib's object API (Figure, not pyplot): no global state, no
# backend switch, so importing pyrovae leaves a notebook's inline plotting alone.


def subplots(*args, figsize: tuple[float, float], **kwargs) -> tuple[Figure, object]:
    """A new :class:`~matplotlib.figure.Figure` and its axes, like ``plt.subplots`` without pyplot's
    state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150))


def _as_images(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) -> (N, H, W) grey or (N, H, W, 3) RGB, clipped to [0, 1]."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C in (1, 3); got {images.shape}")
    images = np.clip(images, 0.0, 1.0)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def tile(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) into one (rows*(H+pad)-pad, ncols*(W+pad)-pad[, 3]) array."""
    imgs = _as_images(images)
    n, h, w = imgs.shape[:3]
    nrows = -(-n // ncols)
    canvas = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, *imgs.shape[3:]))
    canvas *= 0.5  # grey gutters separate black-background images
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return canvas


def _show(ax: Axes, canvas: np.ndarray) -> None:
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def wrapped(title: str, width_inches: float, fontsize: float) -> str:
    """``title`` broken into lines that fit ``width_inches`` at ``fontsize`` points (a
    character is about 0.55 em wide)."""
    return textwrap.fill(title, max(20, int(width_inches * 72 / (0.55 * fontsize))))


def save_image_grid(
    images: np.ndarray, path: str | Path, *, ncols: int | None = None, title: str | None = None
) -> Path:
    """A grid of images (N, C, H, W), ``ncols`` per row (default: about square)."""
    n = len(images)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    canvas = tile(images, ncols)
    fig, ax = subplots(
        figsize=(0.6 * ncols + 0.4, 0.6 * canvas.shape[0] / canvas.shape[1] * ncols + 0.6)
    )
    _show(ax, canvas)
    if title:
        ax.set_title(wrapped(title, fig.get_figwidth(), 10), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_reconstructions(
    originals: np.ndarray, reconstructions: np.ndarray, path: str | Path, *, ncols: int = 10
) -> Path:
    """Inputs (N, C, H, W) on odd rows, their reconstructions directly below."""
    if originals.shape != reconstructions.shape:
        raise ValueError(f"shapes differ: {originals.shape} vs {reconstructions.shape}")
    rows = []
    for start in range(0, len(originals), ncols):
        rows += [originals[start : start + ncols], reconstructions[start : start + ncols]]
    nrows = len(rows)
    width = min(ncols, len(originals))
    fig, axes = subplots(nrows, 1, figsize=(0.6 * width + 1.6, 0.65 * nrows + 0.5))
    axes = np.atleast_1d(axes)
    for i, (ax, row) in enumerate(zip(axes, rows, strict=False)):
        _show(ax, tile(row, width))
        ax.set_ylabel("input" if i % 2 == 0 else "recon.", rotation=0, ha="right", va="center")
    fig.suptitle("Reconstructions: input above, mean of p(x | z) at the posterior mean below")
    fig.tight_layout()
    return _save(fig, path)


def save_traversals(
    images: np.ndarray,
    values: Sequence[float],
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    title: str = "Latent traversals",
    column_labels: Sequence[str] | None = None,
) -> Path:
    """Rows of images (R, S, C, H, W): row r varies one latent over ``values`` (S of them),
    which label the columns unless ``column_labels`` are given."""
    images = np.asarray(images)
    r, s = images.shape[:2]
    fig, ax = subplots(figsize=(0.6 * s + 1.4, 0.6 * r + 0.9))
    canvas = tile(images.reshape(r * s, *images.shape[2:]), s)
    _show(ax, canvas)
    h = images.shape[-2] + 1
    w = images.shape[-1] + 1
    ticks = list(column_labels) if column_labels is not None else [f"{v:.1f}" for v in values]
    ax.set_xticks([w * j + w / 2 - 1 for j in range(s)], ticks, fontsize=6)
    if row_labels is not None:
        ax.set_yticks([h * i + h / 2 - 1 for i in range(r)], list(row_labels), fontsize=7)
    ax.set_title(wrapped(title, fig.get_figwidth(), 9), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_latent_scatter(
    points: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path,
    *,
    title: str = "Latent space",
    axis_labels: tuple[str, str] = ("z1", "z2"),
    legend_title: str = "label",
) -> Path:
    """Points (N, 2), coloured by integer labels (N,) when given, under a legend titled
    ``legend_title``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2); got {points.shape}")
    fig, ax = subplots(figsize=(5.2, 4.4))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, c in enumerate(classes):
            m = labels == c
            ax.scatter(
                points[m, 0], points[m, 1], s=4, alpha=0.7, color=cmap(i % cmap.N), label=str(c)
            )
        ax.legend(
            title=legend_title,
            title_fontsize=8,
            markerscale=3,
            fontsize=7,
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            frameon=False,
        )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def save_elbo_curves(history: Sequence[dict], path: str | Path, *, title: str = "ELBO") -> Path:
    """Train and test ELBO (nats per example) against the epoch."""
    epochs = [r["epoch"] for r in history]
    fig, ax = subplots(figsize=(5, 3.4))
    for key, label in (("train_elbo", "train"), ("test_elbo", "test")):
        ys = [r.get(key) for r in history]
        if any(y is not None for y in ys):
            ax.plot(epochs, ys, marker="." if len(epochs) < 30 else None, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per example)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
