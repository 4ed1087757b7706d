"""The figures of a mixture-prior VAE (:class:`pyrovae.models.MixturePriorVAE`): what each
cluster generates and where the clusters lie in the latent space.

:func:`write_mixture_vae_figures` writes, besides the VAE's own figures
(:func:`~pyrovae.diagnostics.write_figures`: reconstructions, samples, traversals, curves):

- ``cluster_samples.png``: one row per cluster c, images E[x | z] for z ~ p(z | c);
- ``cluster_means.png``: the decoded component means E[x | z = mu_c], titled with pi_c;
- ``latent_clusters.png``: the test codes E_q[z | x] (the codes themselves when L = 2, else
  their top two principal components) coloured by cluster, with each component's 1- and
  2-sigma ellipses projected into that plane;
- ``latent_labels.png``: the same points coloured by label (with labels);
- ``cluster_confusion.png``: labels against clusters after Hungarian matching (with labels),
  titled with the accuracy, the adjusted Rand index and the NMI;
- ``clustering.png``: from the history, per epoch from the initialisation (epoch 0) on, the
  test accuracy and ARI, the mixture's log-likelihood of the codes and the scales of the
  posterior, the components and the codes (:func:`save_clustering_curves`).

Clusters are argmax_c p(c | z) at the guide's mean code
(:meth:`~pyrovae.models.MixturePriorVAE.cluster`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..infer.modes import program_mode
from .clustering import clustering_scores, matched_clusters
from .figures import _save, save_latent_scatter, save_traversals, subplots
from .mixture_figures import _projection, save_component_ellipses, save_component_means
from .ssvae_figures import confusion_matrix, save_confusion_matrix
from .vae_figures import write_figures


@torch.no_grad()
def mean_codes(guide: Callable, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    """The guide's mean codes E_q[z | x] (N, L) for rows x (N, D), in batches (a guide with
    an ``encode(x) -> (loc, scale)`` method, as :class:`~pyrovae.guides.GaussianEncoder`),
    its modules in evaluation mode."""
    encode = getattr(guide, "encode", None)
    if encode is None:
        raise ValueError(
            "the guide has no encode(x) -> (loc, scale) method to give mean codes; use "
            "pyrovae.guides.GaussianEncoder or add one"
        )
    with program_mode(guide, training=False):
        parts = [encode(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def predict_clusters(model, guide: Callable, x: torch.Tensor) -> torch.Tensor:
    """argmax_c p(c | z) at z = E_q[z | x] for rows x (N, D): (N,) (VaDE's rule)."""
    return model.cluster(mean_codes(guide, x))


def save_clustering_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Per epoch (0: the initialisation): test accuracy and ARI (left, with labels), the
    mixture's mean log p(z) of the training codes (middle) and the geometric-mean standard
    deviations of q(z | x), of the components and the codes' spread (right)."""
    records = [r for r in history if "code_log_likelihood" in r]
    epochs = [r["epoch"] for r in records]
    fig, (left, middle, right) = subplots(1, 3, figsize=(12, 3.4))
    marker = "." if len(epochs) < 30 else None
    for key, label in (("test_accuracy", "accuracy"), ("test_adjusted_rand_index", "ARI")):
        values = [r.get(key) for r in records]
        if any(v is not None for v in values):
            left.plot(epochs, values, marker=marker, label=label)
    left.set_title("Test clusters against labels")
    middle.plot(epochs, [r["code_log_likelihood"] for r in records], marker=marker)
    middle.set_title("Mixture's log p(z) of the mean codes")
    middle.set_ylabel("nats per code")
    for key, label in (
        ("posterior_scale", "q(z | x)"),
        ("component_scale", "p(z | c)"),
        ("code_scale", "codes across rows"),
    ):
        right.plot(epochs, [r[key] for r in records], marker=marker, label=label)
    right.set_title("Standard deviations (geometric means)")
    for ax in (left, middle, right):
        ax.set_xlabel("epoch (0: initialisation)")
        ax.grid(alpha=0.3)
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def write_mixture_vae_figures(
    model,
    guide: Callable,
    x: torch.Tensor,
    out_dir: str | Path,
    *,
    labels: torch.Tensor | None = None,
    image_shape: tuple[int, int, int] | None = None,
    history: Sequence[dict] = (),
    seed: int = 0,
    per_cluster: int = 10,
) -> list[Path]:
    """Write the figures listed in the module docstring for test rows x (N, D); returns
    their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = list(
        write_figures(
            model,
            guide,
            x,
            out,
            labels=labels,
            image_shape=image_shape,
            history=list(history),
            seed=seed,
        )
    )
    if any("code_log_likelihood" in r for r in history):
        written.append(save_clustering_curves(history, out / "clustering.png"))
    x = x[:5000]
    y = None if labels is None else labels[: len(x)].cpu()
    k = model.num_components
    with torch.no_grad():
        codes = mean_codes(guide, x)
        clusters = model.cluster(codes).cpu().numpy()
        weights = model.weights.double().cpu().numpy()
        means = model.mixture.loc.detach()
        covariances = model.mixture.covariance_matrix.double().cpu().numpy()
        if image_shape is not None:
            generator_state = torch.get_rng_state()
            torch.manual_seed(seed)
            c = torch.arange(k, device=means.device).repeat_interleave(per_cluster)
            images = model.decode(model.sample_codes(c)).mean.cpu().numpy()
            decoded_means = model.decode(means).mean.cpu().numpy()
            torch.set_rng_state(generator_state)
    if image_shape is not None:
        rows = images.reshape(k, per_cluster, *image_shape)
        written.append(
            save_traversals(
                rows,
                list(range(1, per_cluster + 1)),
                out / "cluster_samples.png",
                row_labels=[f"c={j} ({weights[j]:.2f})" for j in range(k)],
                title="Samples per cluster: E[x | z], z ~ p(z | c) (row: c and its weight pi_c)",
                column_labels=[""] * per_cluster,
            )
        )
        written.append(
            save_component_means(
                decoded_means.reshape(k, *image_shape), weights, out / "cluster_means.png"
            )
        )
    codes_np = codes.double().cpu().numpy()
    if codes_np.shape[1] >= 2 and len(codes_np) >= 2:
        centre, basis, axis_labels = _projection(codes_np)
        points = (codes_np - centre) @ basis.T
        written.append(
            save_component_ellipses(
                points,
                clusters,
                (means.double().cpu().numpy() - centre) @ basis.T,
                basis @ covariances @ basis.T,
                weights,
                out / "latent_clusters.png",
                axis_labels=axis_labels,
                title=f"Latent codes E_q[z | x] of {len(points)} test examples by cluster, "
                f"with p(z | c)",
            )
        )
        if y is not None:
            written.append(
                save_latent_scatter(
                    points,
                    y.numpy(),
                    out / "latent_labels.png",
                    title="The same codes by label (labels unused in training)",
                    axis_labels=axis_labels,
                    legend_title="test label",
                )
            )
    if y is not None:
        scores = clustering_scores(clusters, y.numpy())
        renamed = matched_clusters(clusters, y.numpy())
        size = int(max(renamed.max(), int(y.max()))) + 1
        written.append(
            save_confusion_matrix(
                confusion_matrix(y.numpy(), renamed, size),
                out / "cluster_confusion.png",
                title=f"Clusters after Hungarian matching: accuracy {scores['accuracy']:.3f}, "
                f"ARI {scores['adjusted_rand_index']:.3f}, NMI "
                f"{scores['normalized_mutual_info']:.3f}",
                xlabel="cluster (named by its matched label)",
            )
        )
    return written


__all__ = [
    "mean_codes",
    "predict_clusters",
    "save_clustering_curves",
    "write_mixture_vae_figures",
]
