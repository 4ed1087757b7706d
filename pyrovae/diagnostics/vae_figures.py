"""The figures of a trained VAE-like pair (one continuous latent vector per example), written
into one directory by :func:`~pyrovae.diagnostics.write_figures`: reconstructions, samples, the
latent space, traversals and interpolations, and the ELBO curves, from traces of the pair
(:mod:`pyrovae.diagnostics.views`) drawn by :mod:`pyrovae.diagnostics.figures`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import figures, views


def _images(x: torch.Tensor, image_shape: tuple[int, int, int]) -> np.ndarray:
    return x.detach().cpu().reshape(-1, *image_shape).numpy()


def _project_2d(codes: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Codes (N, L) as 2-D points: the codes themselves if L == 2 (or there are too few
    codes for a PCA), else the top-2 PCA scores."""
    if codes.shape[1] == 1:
        return np.c_[codes, np.zeros(len(codes))], ("z1", "")
    if codes.shape[1] == 2 or len(codes) < 2:
        return codes[:, :2], ("z1", "z2")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(codes)
    share = pca.explained_variance_ratio_ * 100
    return pca.transform(codes), (f"PC1 ({share[0]:.0f}% var.)", f"PC2 ({share[1]:.0f}% var.)")


def _pairs(labels: torch.Tensor | None, n: int, count: int) -> tuple[list[int], list[int]]:
    """Up to ``count`` index pairs of the ``n`` test rows for interpolation (fewer when there
    are fewer rows): examples of different classes when labels exist."""
    if labels is None:
        count = min(count, n // 2)
        return list(range(0, 2 * count, 2)), list(range(1, 2 * count, 2))
    starts, ends = [], []
    for i in range(n):
        if len(starts) == count:
            break
        j = next((j for j in range(i + 1, n) if labels[j] != labels[i]), None)
        if j is not None and i not in ends:
            starts.append(i)
            ends.append(j)
    return starts, ends


def write_figures(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    out_dir: str | Path,
    *,
    labels: torch.Tensor | None = None,
    image_shape: tuple[int, int, int] | None = None,
    history: Sequence[dict] = (),
    seed: int = 0,
    args: tuple[torch.Tensor, ...] = (),
) -> list[Path]:
    """Write reconstructions, prior samples, traversals, interpolations, the latent map and
    the ELBO curves for test rows ``x`` (N, D) with optional ``labels`` (N,).

    ``args``: further arguments of the programs after x (each (N, ...), e.g. a mask), given
    with their rows; samples, traversals and interpolations take the first example's.

    Image figures need ``image_shape`` (C, H, W); figures that need a continuous latent vector
    site are skipped, with a warning, for models without one. Runs under a forked RNG
    seeded with ``seed``: reproducible, and the caller's random streams are untouched.
    """
    out = Path(out_dir)
    written: list[Path] = []
    if history:
        written.append(figures.save_elbo_curves(history, out / "elbo.png"))
    x, args = x[:2000], tuple(a[:2000] for a in args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sites = views.find_sites(model, guide, (x[:8], *(a[:8] for a in args)))
        if image_shape is not None:
            written.append(_samples(model, (x, *args), sites, image_shape, out / "samples.png"))
        if sites.latent is None:
            warnings.warn(
                "the guide samples no continuous latent vector that the model shares; "
                "reconstructions, traversals, interpolations and the latent map are skipped",
                stacklevel=2,
            )
            return written
        codes = views.encode(guide, (x, *args), sites.latent)
        if image_shape is not None:
            written += _image_views(
                model, guide, (x, *args), labels, sites, codes, image_shape, out
            )
        points, axis_labels = _project_2d(codes.cpu().numpy())
        y = None if labels is None else labels[: len(x)].cpu().numpy()
        written.append(
            figures.save_latent_scatter(
                points,
                y,
                out / "latent_space.png",
                title=f"Posterior means E_q[z | x] of {len(x)} test examples",
                axis_labels=axis_labels,
                legend_title="test label",
            )
        )
    return written


#: The samples' title: what is drawn, and how it is shown.
SAMPLES_TITLE = (
    "{n} random draws z ~ p(z) from the prior, each shown as E[x | z], the mean of p(x | z)"
)


def _samples(model, inputs, sites, image_shape, path) -> Path:
    means = views.prior_means(model, views.repeat_first(inputs, 64), sites)
    return figures.save_image_grid(
        _images(means, image_shape),
        path,
        ncols=8,
        title=SAMPLES_TITLE.format(n=len(means)),
    )


def _image_views(model, guide, inputs, labels, sites, codes, image_shape, out) -> list[Path]:
    """Reconstructions, traversals and interpolations; ``inputs``: (x, *args)."""
    written = []
    x, *args = inputs
    recon = views.reconstruct(model, guide, tuple(a[:20] for a in inputs), sites)
    written.append(
        figures.save_reconstructions(
            _images(x[:20], image_shape), _images(recon, image_shape), out / "reconstructions.png"
        )
    )
    dims = views.active_dims(codes, min(8, codes.shape[1]))
    activity = codes.var(dim=0, correction=0)  # Var_x E_q[z_d | x], as active_dims ranks
    values = torch.linspace(-3, 3, 7, dtype=codes.dtype, device=codes.device)  # whole numbers
    grid = views.traversals(model, x, sites, codes[0], dims, values, args=tuple(args))
    written.append(
        figures.save_traversals(
            _images(grid.reshape(-1, grid.shape[-1]), image_shape).reshape(
                *grid.shape[:2], *image_shape
            ),
            values.tolist(),
            out / "traversals.png",
            row_labels=[f"z{d + 1} ({float(activity[d]):.2g})" for d in dims],
            title=traversal_title(len(dims), codes.shape[1], len(codes)),
        )
    )
    starts, ends = _pairs(labels, len(x), 6)
    if starts:
        # 11 steps: t = 0, 0.1, ..., 1, round ticks.
        path = views.interpolations(
            model, x, sites, codes[starts], codes[ends], steps=11, args=tuple(args)
        )
        written.append(
            figures.save_traversals(
                _images(path.reshape(-1, path.shape[-1]), image_shape).reshape(
                    *path.shape[:2], *image_shape
                ),
                torch.linspace(0, 1, 11).tolist(),
                out / "interpolation.png",
                title="Interpolation z_t = (1 - t) z_a + t z_b between the posterior means of "
                "two test images"
                + (" of different labels" if labels is not None else "")
                + ", decoded as E[x | z_t]; columns: t",
            )
        )
    return written


def traversal_title(shown: int, latent_dim: int, examples: int) -> str:
    """The traversal figure's title: which latents (the most active, and how activity is
    measured) and what is varied."""
    return (
        f"The {shown} most active of {latent_dim} latents, by Var_x E_q[z_d | x] over "
        f"{examples} test images (in brackets); row: z_d set to each column's value, the "
        "others at test image 0's posterior mean; decoded as E[x | z]"
    )
