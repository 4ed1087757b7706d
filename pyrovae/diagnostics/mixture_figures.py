"""Figures of a fitted Gaussian mixture: components as ellipses over the data, means as
images, the BIC curve, responsibilities, clusters against labels, EM's progress.

Like :mod:`pyrovae.diagnostics.figures`, the ``save_*`` functions take numpy arrays, write
one PNG atomically and return its path; no pyplot state. :func:`write_mixture_figures`
draws them all from a fitted :class:`~pyrovae.models.GaussianMixture`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.patches import Ellipse

from .figures import _save, _show, save_elbo_curves, save_image_grid, subplots, tile


def _colour(i: int, k: int):
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return cmap(i % cmap.N)


def save_component_ellipses(
    points: np.ndarray,
    assignments: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    weights: np.ndarray,
    path: str | Path,
    *,
    axis_labels: tuple[str, str] = ("x1", "x2"),
    title: str = "Gaussian mixture",
) -> Path:
    """Points (N, 2) coloured by their component (N,), and for each component k the ellipses
    {x : (x - mu_k)^T Sigma_k^{-1} (x - mu_k) = c^2} for c = 1 and 2 (means (K, 2),
    covariances (K, 2, 2)); the line width grows with the weight pi_k (K,)."""
    points, means, covariances = map(np.asarray, (points, means, covariances))
    k = len(means)
    fig, ax = subplots(figsize=(5.6, 4.6))
    for j in range(k):
        mask = assignments == j
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.45, color=_colour(j, k))
    width = 0.8 + 2.5 * np.asarray(weights) / max(float(np.max(weights)), 1e-12)
    for j in range(k):
        values, vectors = np.linalg.eigh(covariances[j])
        values = np.clip(values, 0.0, None)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for c in (1.0, 2.0):
            ax.add_patch(
                Ellipse(
                    means[j],
                    2 * c * np.sqrt(values[-1]),
                    2 * c * np.sqrt(values[0]),
                    angle=angle,
                    fill=False,
                    lw=width[j] / c,
                    color=_colour(j, k),
                )
            )
        ax.plot(*means[j], marker="x", color="black", ms=5)
        ax.annotate(str(j), means[j], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    ax.autoscale_view()
    fig.tight_layout()
    return _save(fig, path)


def save_component_means(
    images: np.ndarray, weights: np.ndarray, path: str | Path, *, ncols: int = 10
) -> Path:
    """Component means as images (K, C, H, W), heaviest first, each titled with pi_k."""
    order = np.argsort(-np.asarray(weights))
    k = len(order)
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(0.95 * ncols + 0.3, 1.1 * nrows + 0.5))
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, j in zip(axes, order, strict=False):
        _show(ax, tile(images[j : j + 1], 1, pad=0))
        ax.set_title(f"{j}: {weights[j]:.2f}", fontsize=7)
    fig.suptitle("Component means mu_k (component: weight pi_k)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_bic_curve(sweep: Sequence[dict], selected: int, path: str | Path) -> Path:
    """BIC and AIC of the training data against the number of components K (lower is better),
    with the selected K marked."""
    ks = [row["components"] for row in sweep]
    fig, ax = subplots(figsize=(5, 3.4))
    for key, label in (("bic", "BIC"), ("aic", "AIC")):
        ax.plot(ks, [row[key] for row in sweep], marker="o", label=label)
    ax.axvline(selected, color="grey", ls="--", lw=1, label=f"selected K = {selected}")
    ax.set_xlabel("components K")
    ax.set_ylabel("criterion on the training data")
    ax.set_title("Model selection: BIC = -2 log L + p log N, AIC = -2 log L + 2 p", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def save_responsibilities(
    responsibilities: np.ndarray, path: str | Path, *, labels: np.ndarray | None = None
) -> Path:
    """A heat map of r_nk = p(z_n = k | x_n) (N, K), rows sorted by label when given (then by
    MAP component), else by MAP component; the labels mark the rows on the left."""
    r = np.asarray(responsibilities)
    top = r.argmax(1)
    keys = (top,) if labels is None else (top, np.asarray(labels))  # last key sorts first
    order = np.lexsort(keys)
    fig, ax = subplots(figsize=(0.35 * r.shape[1] + 2.6, 5))
    image = ax.imshow(r[order], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="none")
    ax.set_xlabel("component k")
    ax.set_xticks(range(r.shape[1]))
    ax.tick_params(axis="x", labelsize=7)
    if labels is None:
        ax.set_ylabel(f"{len(r)} test examples, by MAP component")
    else:
        sorted_labels = np.asarray(labels)[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
        ax.set_yticks(starts, [str(sorted_labels[s]) for s in starts], fontsize=7)
        ax.set_ylabel(f"{len(r)} test examples, by label")
    fig.colorbar(image, ax=ax, label="responsibility")
    ax.set_title("Responsibilities p(z = k | x)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_cluster_table(
    assignments: np.ndarray,
    labels: np.ndarray,
    num_components: int,
    path: str | Path,
    *,
    ari: float,
) -> Path:
    """Counts of (label, component) pairs: how the clusters split the classes, with the
    adjusted Rand index in the title."""
    classes = np.unique(labels)
    table = np.zeros((len(classes), num_components), dtype=int)
    for i, c in enumerate(classes):
        table[i] = np.bincount(assignments[labels == c], minlength=num_components)
    fig, ax = subplots(figsize=(0.45 * num_components + 2.2, 0.4 * len(classes) + 1.4))
    ax.imshow(table / np.maximum(table.sum(1, keepdims=True), 1), cmap="Blues", aspect="auto")
    if table.size <= 400:
        for (i, j), count in np.ndenumerate(table):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(num_components))
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.tick_params(labelsize=7)
    ax.set_xlabel("MAP component")
    ax.set_ylabel("label")
    ax.set_title(f"Clusters against labels (test), adjusted Rand index {ari:.3f}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_em_curve(log_likelihood: Sequence[float], path: str | Path) -> Path:
    """EM's mean log-likelihood per iteration (nats per example); it never decreases."""
    values = np.asarray(log_likelihood, dtype=float)
    fig, axes = subplots(1, 2, figsize=(8, 3.2))
    axes[0].plot(np.arange(1, len(values) + 1), values, marker="." if len(values) < 40 else None)
    axes[0].set_xlabel("EM iteration")
    axes[0].set_ylabel("train log p(x) (nats per example)")
    axes[0].set_title("log-likelihood", fontsize=9)
    if len(values) > 1:
        gain = np.diff(values)
        axes[1].semilogy(np.arange(2, len(values) + 1), np.clip(gain, 1e-12, None))
    axes[1].set_xlabel("EM iteration")
    axes[1].set_title("improvement per iteration", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def adjusted_rand_index(assignments: torch.Tensor, labels: torch.Tensor | None) -> float | None:
    """Adjusted Rand index of the clusters against the labels (1: the same partition, about 0:
    chance; Hubert & Arabie 1985), or None without labels."""
    if labels is None:
        return None
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels.cpu().numpy(), assignments.cpu().numpy()))


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
    model,
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

    out = Path(out_dir)
    written: list[Path] = []
    x = x[:5000]
    with torch.no_grad():
        assignments = model.predict(x).cpu().numpy()
        weights = model.weights.double().cpu().numpy()
        means = model.loc.double().cpu().numpy()
        tril = model.scale_tril.double().expand(model.num_components, model.dim, model.dim)
        covariances = (tril @ tril.mT).cpu().numpy()
        responsibilities = model.posterior(x[:200]).cpu().numpy()
    xs = x.double().cpu().numpy()
    y = None if labels is None else labels[: len(x)].cpu().numpy()
    if model.dim >= 2:
        centre, basis, axis_labels = _projection(xs)
        written.append(
            save_component_ellipses(
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
        written.append(save_component_means(images, weights, out / "means.png"))
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
        save_responsibilities(
            responsibilities, out / "responsibilities.png", labels=None if y is None else y[:200]
        )
    )
    if y is not None:
        ari = adjusted_rand_index(torch.as_tensor(assignments), torch.as_tensor(y))
        written.append(
            save_cluster_table(assignments, y, model.num_components, out / "clusters.png", ari=ari)
        )
    if len(sweep) > 1:
        written.append(save_bic_curve(sweep, model.num_components, out / "bic.png"))
    if history and "train_log_likelihood" in history[0]:
        curve = [row["train_log_likelihood"] for row in history]
        written.append(save_em_curve(curve, out / "em.png"))
    elif history:
        written.append(
            save_elbo_curves(history, out / "elbo.png", title="ELBO = log p(x) (z summed out)")
        )
    return written
