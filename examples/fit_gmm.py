r"""A Gaussian mixture fit two ways, EM and TraceEnum SVI, with K chosen by BIC.

Model: one Pyro program, :class:`pyrovae.models.GaussianMixture`, for each row n::

    z_n ~ Categorical(pi)                  the component (site "z", enumerated)
    x_n | z_n ~ N(mu_{z_n}, Sigma_{z_n})   the observation (site "x")

so p(x_n) = sum_k pi_k N(x_n; mu_k, Sigma_k). The rows x_n are images projected onto their
top D principal components (fit on the training images), so full covariances stay cheap and
the first two coordinates are the plane the ellipse figures are drawn in.

1. Choose K. For every K of ``--components``, EM (:func:`pyrovae.models.fit_mixture`: k-means++
   seeds, ``--n-init`` restarts, closed-form M-step, the E-step by enumerating the program)
   maximises log p(x); BIC(K) = -2 sum_n log p(x_n) + p_K log N on the training rows, with
   p_K free parameters (Schwarz 1978). The lowest BIC wins.
2. Fit the chosen K again by SVI, ``pyrovae.fit(model, empty_guide, x, objective=...)`` with
   Pyro's TraceEnum_ELBO (the same as ``objective="enum"``). The guide samples nothing and z is
   summed out exactly, so the "ELBO" it climbs *is* log p(x), by minibatch gradient steps
   (Adam), from the same k-means++ start as EM's winning restart.
3. Compare: exact train and test log p(x) (nats per example, higher is better), the adjusted
   Rand index of the MAP clusters against the digit labels, and the figures.

Run (from the repository root; nothing is downloaded)::

    python examples/fit_gmm.py                      # digits, 10 PCA dims: about 10 s on 2 cores
    python examples/fit_gmm.py --covariance diag --pca-dim 20 --out examples-out/gmm-diag
    python examples/fit_gmm.py --dataset mnist --data-dir ../shared/data/mnist \
        --pca-dim 30 --components 10,20,30,40,50 --n-init 1 --max-iter 100 \
        --svi-epochs 40 --batch-size 1000 --lr 0.005 --out examples-out/fit_gmm_mnist

On digits BIC picks K = 10; EM reaches a test log p(x) of -4.39 nats per image in 24
iterations, and its clusters match the labels with an adjusted Rand index of 0.78. SVI needs
about 40 epochs to match EM, then edges past it on the training data (-3.93 against -3.95: the
likelihood has many local optima). The MNIST command fits all 60,000 training images (about
5 minutes on 2 cores). With that many rows a parameter costs little, so BIC still falls at
K = 50 (extend ``--components`` to find its minimum), and SVI needs the smaller learning rate
to come within a nat of EM.

Figures, in ``--out`` (default ``examples-out/fit_gmm``): ``bic.png`` (BIC and AIC against K),
``em_vs_svi.png`` (log p(x) per pass over the data, EM against SVI), ``em.png`` (EM's
log-likelihood and its gain per iteration), ``components_em.png`` and ``components_svi.png``
(test points on PC1-PC2 with each component's 1- and 2-sigma ellipses), ``means.png`` (the
component means mapped back to pixels), ``responsibilities.png`` (p(z = k | x) of 200 test
images) and ``clusters.png`` (MAP clusters against labels).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch
from matplotlib.figure import Figure
from pyro.infer import TraceEnum_ELBO
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.diagnostics import mixture_figures
from pyrovae.infer import EMHistory, History, Trainer
from pyrovae.models import GaussianMixture, empty_guide, fit_mixture


@dataclass
class Features:
    """Images as PCA scores, float64: ``train`` (N, D), ``test`` (M, D), labels (N,), (M,)."""

    train: torch.Tensor
    test: torch.Tensor
    train_y: torch.Tensor | None
    test_y: torch.Tensor | None
    pca: PCA
    image_shape: tuple[int, int, int] | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fit a Gaussian mixture by EM and by TraceEnum SVI; choose K by BIC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="digits", help="digits, mnist or fashion-mnist")
    parser.add_argument(
        "--data-dir", help="folder with the MNIST idx files (read locally, never downloaded)"
    )
    parser.add_argument("--pca-dim", type=int, default=10, help="D, principal components kept")
    parser.add_argument(
        "--components",
        default="2,4,6,8,10,12,15,20",
        help="the Ks to compare by BIC, comma-separated",
    )
    parser.add_argument(
        "--covariance",
        choices=["full", "tied", "diag", "spherical"],
        default="full",
        help="the shape of each Sigma_k (tied: one shared by all)",
    )
    parser.add_argument("--n-init", type=int, default=3, help="EM restarts per K")
    parser.add_argument("--max-iter", type=int, default=200, help="EM iterations per restart")
    parser.add_argument(
        "--tol", type=float, default=1e-4, help="EM stops once log p(x) gains less per example"
    )
    parser.add_argument("--svi-epochs", type=int, default=60, help="SVI passes over the data")
    parser.add_argument("--batch-size", type=int, default=256, help="SVI minibatch size")
    parser.add_argument("--lr", type=float, default=0.02, help="SVI Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds k-means++, batches, draws")
    parser.add_argument(
        "--out", type=Path, default=Path("examples-out/fit_gmm"), help="figures go here"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def load_features(dataset: str, data_dir: str | None, dim: int) -> Features:
    """The dataset's images projected onto their top ``dim`` principal components."""
    data = load_dataset(dataset, data_dir)
    pca = PCA(n_components=dim, random_state=0).fit(data.train_x.numpy())

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(pca.transform(x.numpy())).double()

    return Features(
        project(data.train_x),
        project(data.test_x),
        data.train_y,
        data.test_y,
        pca,
        data.image_shape,
    )


def choose_components(
    x: torch.Tensor, ks: list[int], args: argparse.Namespace
) -> tuple[list[dict], GaussianMixture, EMHistory, int]:
    """EM for every K; returns the sweep (one row per K), the lowest-BIC model, its EM
    history and the seed of its winning restart (fit_mixture seeds restart i with seed + i)."""
    sweep, best = [], None
    for k in ks:
        model, history = fit_mixture(
            x,
            k,
            covariance=args.covariance,
            n_init=args.n_init,
            max_iter=args.max_iter,
            tol=args.tol,
            seed=args.seed,
            progress=not args.quiet,
        )
        row = {"components": k, "log_likelihood": model.score(x)}
        row.update(bic=model.bic(x), aic=model.aic(x), iterations=history.iterations)
        sweep.append(row)
        if best is None or row["bic"] < best[0]["bic"]:
            best = (row, model, history, args.seed + int(np.argmax(history.restarts)))
    return sweep, *best[1:]


def fit_by_svi(
    start: GaussianMixture, train: torch.Tensor, test: torch.Tensor, args: argparse.Namespace
) -> tuple[GaussianMixture, History]:
    """The same program trained by TraceEnum SVI from ``start``'s parameters. Each epoch's
    record gets the exact train log p(x) at the epoch's end; its ``test_elbo`` is the exact
    test log p(x) (z is summed out)."""
    model = copy.deepcopy(start)

    def train_log_likelihood(trainer: Trainer) -> dict[str, float]:
        return {"train_log_likelihood": trainer.model.score(train)}

    history = pyrovae.fit(
        model,
        empty_guide,
        train,
        test_data=test,
        objective=TraceEnum_ELBO(max_plate_nesting=1),  # the "data" plate only
        epochs=args.svi_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        metrics=[train_log_likelihood],
        progress=not args.quiet,
    )
    return model, history


def ari(model: GaussianMixture, x: torch.Tensor, labels: torch.Tensor | None) -> float:
    """Adjusted Rand index of the MAP clusters against the labels (NaN without labels)."""
    if labels is None:
        return math.nan
    return float(adjusted_rand_score(labels.numpy(), model.predict(x).numpy()))


def save_em_vs_svi(em_curve: list[float], svi: History, path: Path) -> Path:
    """Train log p(x) against passes over the data for EM (one pass per iteration) and SVI
    (one per epoch), both from the same start."""
    em_values = np.asarray(em_curve)
    svi_values = np.r_[em_values[0], svi.column("train_log_likelihood")]  # the same start
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    for values, label in ((em_values, "EM"), (svi_values, "TraceEnum SVI (Adam)")):
        ax.plot(values, marker="." if len(values) < 40 else None, label=label)
    # From the first pass on: the start (k-means++ and one M-step) is far below.
    top = max(em_values.max(), svi_values.max())
    low = min(em_values[min(1, len(em_values) - 1)], svi_values[-1])
    ax.set_ylim(low - 0.15 * (top - low + 1e-9), top + 0.05 * (top - low + 1e-9))
    ax.set_xlabel("passes over the training data")
    ax.set_ylabel("train log p(x) (nats per example)")
    ax.set_title("The same program by EM and by SVI: exact log-likelihood", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return path


def save_ellipses(model: GaussianMixture, features: Features, title: str, path: Path) -> Path:
    """Up to 2000 test points on (PC1, PC2), coloured by MAP component, with the components'
    1- and 2-sigma ellipses: the exact marginals of N(mu_k, Sigma_k) on the first two
    coordinates."""
    points = features.test[:2000]
    with torch.no_grad():
        cov = model.covariance_matrix[:, :2, :2].numpy()
        means = model.loc[:, :2].detach().numpy()
        weights = model.weights.detach().numpy()
    share = features.pca.explained_variance_ratio_[:2] * 100
    return mixture_figures.save_component_ellipses(
        points[:, :2].numpy(),
        model.predict(points).numpy(),
        means,
        cov,
        weights,
        path,
        axis_labels=(f"PC1 ({share[0]:.0f}% var.)", f"PC2 ({share[1]:.0f}% var.)"),
        title=title,
    )


def save_figures(
    out: Path,
    features: Features,
    sweep: list[dict],
    em_model: GaussianMixture,
    em_history: EMHistory,
    svi_model: GaussianMixture,
    svi_history: History,
) -> list[Path]:
    """Every figure of the run (see the module docstring); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    k, test, labels = em_model.num_components, features.test, features.test_y
    paths = [
        mixture_figures.save_bic_curve(sweep, k, out / "bic.png"),
        save_em_vs_svi(em_history.log_likelihood, svi_history, out / "em_vs_svi.png"),
        mixture_figures.save_em_curve(em_history.log_likelihood, out / "em.png"),
    ]
    for name, model in (("EM", em_model), ("SVI", svi_model)):
        title = f"{name}: K = {k} ({model.covariance}), {min(len(test), 2000)} test images"
        paths.append(save_ellipses(model, features, title, out / f"components_{name.lower()}.png"))
    if features.image_shape is not None:  # the means, back from PCA scores to pixels
        pixels = features.pca.inverse_transform(em_model.loc.detach().numpy())
        images = pixels.reshape(-1, *features.image_shape)
        weights = em_model.weights.detach().numpy()
        paths.append(mixture_figures.save_component_means(images, weights, out / "means.png"))
    responsibilities = em_model.posterior(test[:200]).numpy()
    paths.append(
        mixture_figures.save_responsibilities(
            responsibilities,
            out / "responsibilities.png",
            labels=None if labels is None else labels[:200].numpy(),
        )
    )
    if labels is not None:
        assignments = em_model.predict(test).numpy()
        paths.append(
            mixture_figures.save_cluster_table(
                assignments,
                labels.numpy(),
                k,
                out / "clusters.png",
                ari=ari(em_model, test, labels),
            )
        )
    return paths


def report(
    sweep: list[dict],
    features: Features,
    em_model: GaussianMixture,
    svi_model: GaussianMixture,
    svi_history: History,
) -> None:
    """Print the sweep and the two fits of the chosen K (nats per example)."""
    print(f"\n{'K':>4} {'train log p(x)':>15} {'BIC':>12} {'AIC':>12} {'EM iterations':>14}")
    for row in sweep:
        print(
            f"{row['components']:>4} {row['log_likelihood']:>15.3f} {row['bic']:>12.1f} "
            f"{row['aic']:>12.1f} {row['iterations']:>14}"
        )
    k = em_model.num_components
    print(f"chosen K = {k} (lowest BIC of K in {[row['components'] for row in sweep]})")
    train, test, labels = features.train, features.test, features.test_y
    print(f"\n{'K = ' + str(k):<22} {'train log p(x)':>15} {'test log p(x)':>14} {'test ARI':>9}")
    for name, model in (("EM", em_model), ("TraceEnum SVI", svi_model)):
        print(
            f"{name:<22} {model.score(train):>15.3f} {model.score(test):>14.3f} "
            f"{ari(model, test, labels):>9.3f}"
        )
    gain = svi_model.score(train) - em_model.score(train)
    print(
        f"SVI after {len(svi_history)} epochs minus EM: {gain:+.4f} nats per example of train "
        "log p(x) (exact, z summed out; ARI: adjusted Rand index against the labels)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pyro.set_rng_seed(args.seed)
    ks = sorted({int(k) for k in args.components.split(",")})
    features = load_features(args.dataset, args.data_dir, args.pca_dim)
    print(
        f"{args.dataset}: {len(features.train)} train / {len(features.test)} test images as "
        f"{args.pca_dim} principal components; {args.covariance} covariances, K in {ks}"
    )
    sweep, em_model, em_history, start_seed = choose_components(features.train, ks, args)
    start = GaussianMixture(em_model.num_components, args.pca_dim, args.covariance).double()
    start.initialize(features.train, seed=start_seed)  # EM's winning k-means++ start
    svi_model, svi_history = fit_by_svi(start, features.train, features.test, args)
    paths = save_figures(args.out, features, sweep, em_model, em_history, svi_model, svi_history)
    report(sweep, features, em_model, svi_model, svi_history)
    print(f"figures: {', '.join(p.name for p in paths)} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
