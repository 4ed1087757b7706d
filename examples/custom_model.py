r"""Declaring a new latent-variable model: Poisson factor analysis of pixel counts.

Every pixel of scikit-learn's 8x8 digits counts the black pixels in a 4x4 block of the
original 32x32 bitmap: a whole number c in 0..16, which pyrovae's loader divides by L = 16
(MNIST's grey levels, whole numbers 0..255, read as counts out of L = 255). Counts call for a
count likelihood. Poisson factor analysis explains an image as a nonnegative sum of K parts
(Lee & Seung 1999: the Poisson likelihood of W h is NMF's KL objective; Zhou et al. 2012), here
with log-normal loadings exp(z_n), for each row n of the data plate::

    z_n ~ N(0, I_K)                                   site "z": log-loadings of the K parts
    L x_nd | z_n ~ Poisson(L m_d(z_n))                site "x": the counts, observed as x = c / L
    m(z_n) = E[x_n | z_n] = b + sum_k exp(z_nk) W_k   parts W_k >= 0 and background b >= 0 (D,)

The amortized guide is q(z_n | x_n) = N(mu_phi(x_n), diag sigma_phi(x_n)^2) from an MLP that
reads log(1 + c_n), so the loadings are log-normal under q too.

The pair follows pyrovae's contract, so nothing is registered and every tool works on it
unchanged: both subclass ``LocalPyroModule`` (module-local parameters), with the signature
``(x, y=None)``; the model observes its data at site "x" inside ``pyro.plate("data", N)``;
the guide samples the model's one latent, "z". This script trains it with ``pyrovae.fit``
(Pyro's Trace_ELBO), estimates the test log p(x) with ``pyrovae.log_marginal`` (importance
sampling, guide against prior as proposal) and draws pyrovae's figures. Here log p(x) is a
log-probability of whole counts, at most 0, so it does not compare with the densities of
continuous likelihoods (such as the continuous Bernoulli's 92 nats on digits).

Run (from the repository root; nothing is downloaded)::

    python examples/custom_model.py                  # digits: about 25 s on 2 cores
    python examples/custom_model.py --dataset mnist --data-dir ../shared/data/mnist \
        --latent-dim 32 --hidden 512 --epochs 30 --num-samples 200 --out examples-out/pfa_mnist
        # MNIST, grey levels as counts of 255: about 3 minutes

The same pair trains and evaluates from the command line through :func:`factory`, with the
same numbers for the same seed (``PYTHONPATH`` lets ``pyrovae`` import this file as the module
``custom_model``; ``evaluate`` rebuilds the pair through it too, once you name the factory:
a run reopens only with the factory you name)::

    export PYTHONPATH=examples
    pyrovae train custom_model:factory --latent-dim 16 --hidden 256 --epochs 600 --lr 3e-3 \
        --out runs/poisson-fa
    pyrovae evaluate runs/poisson-fa --num-samples 1000 --factory custom_model:factory

On digits it reaches a test log p(x) of -131.4 nats per image (importance sampling, K = 1000),
against -185.0 for independent Poisson pixels. On MNIST the command line needs
``--likelihood gaussian``: this model ignores that setting, but under ``auto`` pyrovae would
binarize MNIST for its Bernoulli decoders, which :func:`factory` refuses.

Figures, in ``--out`` (default ``examples-out/custom_model``): pyrovae's own ``elbo.png``,
``samples.png``, ``reconstructions.png``, ``traversals.png``, ``interpolation.png`` and
``latent_space.png``, plus ``parts.png`` (the learned parts W_k) and ``khat.png`` (Pareto k-hat
of each test image's importance weights).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from matplotlib.figure import Figure
from pyro.distributions import constraints
from torch import nn
from torch.nn.functional import softplus

import pyrovae
from pyrovae.data import DataSplits, load_dataset
from pyrovae.diagnostics import write_figures
from pyrovae.diagnostics.importance_figures import save_khat_plot
from pyrovae.diagnostics.views import encode
from pyrovae.module import LocalPyroModule
from pyrovae.nn import MLP
from pyrovae.runs import TrainConfig

# ---- the model and its guide ----------------------------------------------------------------


class GreyLevelPoisson(dist.TorchDistribution):
    """x = c / L with independent counts c_d ~ Poisson(rate_d): a count likelihood on the
    data's own scale, so E[x] = rate / L is an image (what pyrovae's figures draw).

    Args:
        rate: (..., D) Poisson rates of the counts; one event is a row of D pixels.
        levels: L, the number of grey levels above 0 (x takes the values 0, 1/L, 2/L, ...).
    """

    arg_constraints = {"rate": constraints.positive}
    support = constraints.independent(constraints.nonnegative, 1)  # the lattice of c / L

    def __init__(self, rate: torch.Tensor, levels: float, validate_args: bool | None = None):
        self.rate, self.levels = rate, float(levels)
        super().__init__(rate.shape[:-1], rate.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.rate / self.levels

    def sample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            return torch.poisson(self.rate.expand(shape)) / self.levels

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log P(c = L x), summed over the D pixels: (...,) for rows x (..., D)."""
        if self._validate_args:
            self._validate_sample(x)
        counts = (x * self.levels).round()
        return dist.Poisson(self.rate, validate_args=False).log_prob(counts).sum(-1)


def inverse_softplus(y: float) -> float:
    """The raw value whose softplus is y > 0."""
    return math.log(math.expm1(y))


class PoissonFactorAnalysis(LocalPyroModule):
    """p(x, z) = N(z; 0, I_K) prod_d Poisson(L x_d; L m_d(z)), m(z) = b + exp(z) W, for rows
    x (N, D) on the lattice {0, 1/L, ..., 1} and log-loadings z (N, K).

    Args:
        input_dim: D, pixels per image.
        latent_dim: K, the number of parts.
        levels: L, grey levels above 0 (16 for digits, 255 for MNIST).
    """

    def __init__(self, input_dim: int, latent_dim: int = 16, levels: float = 16.0) -> None:
        super().__init__()
        self.latent_dim, self.levels = latent_dim, float(levels)
        # Start with E[x | z] near the digits' mean grey level: E[exp z] = e^0.5 per part.
        start = inverse_softplus(0.15 / latent_dim)
        self.raw_parts = nn.Parameter(start + 0.5 * torch.randn(latent_dim, input_dim))
        self.raw_background = nn.Parameter(torch.full((input_dim,), inverse_softplus(0.01)))

    @property
    def parts(self) -> torch.Tensor:
        """W (K, D) >= 0: part k adds exp(z_k) W_k to the expected image."""
        return softplus(self.raw_parts)

    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] = b + exp(z) W (..., D) for log-loadings z (..., K); positive."""
        return softplus(self.raw_background) + 1e-4 + z.exp() @ self.parts

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z (N, K) and observe x (N, D) at site "x"; ``y`` is accepted and ignored."""
        n = x.shape[0]
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1))
            rate = self.levels * self.mean_image(z)
            pyro.sample("x", GreyLevelPoisson(rate, self.levels), obs=x)
        return z


class LogNormalEncoder(LocalPyroModule):
    """q(z | x) = N(z; mu(x), diag sigma(x)^2) for rows x (N, D), z (N, K): the loadings
    exp(z) are log-normal. The MLP reads log(1 + L x), the counts on a tamer scale."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        hidden_dims: Sequence[int] = (256,),
        levels: float = 16.0,
    ) -> None:
        super().__init__()
        self.latent_dim, self.levels = latent_dim, float(levels)
        self.net = MLP(input_dim, hidden_dims, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        loc, raw_scale = self.net(torch.log1p(self.levels * x)).split(self.latent_dim, dim=-1)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(loc, softplus(raw_scale) + 1e-3).to_event(1))


def grey_levels(x: torch.Tensor, candidates: Sequence[int] = (1, 16, 255)) -> float:
    """The first L of ``candidates`` for which every entry of x (N, D) is a whole count / L."""
    for levels in candidates:
        counts = x * levels
        if bool(((counts - counts.round()).abs() < 1e-3).all()):
            return float(levels)
    raise ValueError(
        f"Poisson factor analysis needs counts: values c / L with whole c, for L in "
        f"{list(candidates)}; these data are not (rescale them to counts / L first)"
    )


def factory(
    input_dim: int,
    latent_dim: int,
    hidden_dims: Sequence[int],
    data: DataSplits,
    config: TrainConfig | None = None,
) -> tuple[PoissonFactorAnalysis, LogNormalEncoder]:
    """The (model, guide) pair; ``pyrovae train custom_model:factory`` calls it with, by
    parameter name, D of the data, ``--latent-dim``, ``--hidden``, the loaded data and the
    run's settings."""
    if config is not None and config.binarize == "dynamic":
        raise ValueError(
            "this model observes grey levels as counts, but pyrovae would binarize the training "
            "images (--likelihood auto picks a Bernoulli for MNIST); pass --likelihood gaussian, "
            "which this model ignores and which keeps the grey levels"
        )
    levels = grey_levels(data.train_x)
    model = PoissonFactorAnalysis(input_dim, latent_dim, levels)
    return model, LogNormalEncoder(input_dim, latent_dim, hidden_dims, levels)


# ---- the script: fit, estimate log p(x), draw ------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Poisson factor analysis of pixel counts: a new Pyro model and guide, "
        "trained with pyrovae.fit, evaluated with pyrovae.log_marginal, drawn with pyrovae's "
        "figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="digits", help="digits, mnist or fashion-mnist")
    parser.add_argument(
        "--data-dir", help="folder with the MNIST idx files (read locally, never downloaded)"
    )
    parser.add_argument("--latent-dim", type=int, default=16, help="K, the number of parts")
    parser.add_argument(
        "--hidden", default="256", help="the encoder's hidden widths, comma-separated"
    )
    parser.add_argument("--epochs", type=int, default=600, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, default=128, help="images per gradient step")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument(
        "--num-samples", type=int, default=1000, help="importance samples per test image"
    )
    parser.add_argument(
        "--eval-images", type=int, help="the first N test images for log p(x); None: all"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, batches and draws")
    parser.add_argument(
        "--out", type=Path, default=Path("examples-out/custom_model"), help="figures go here"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def independent_poisson(train: torch.Tensor, test: torch.Tensor, levels: float) -> float:
    """Mean log p(x) of test rows (M, D) under the baseline without latents: every pixel its
    own Poisson, at its mean count over the training rows (N, D), floored at 0.01."""
    rate = (levels * train).mean(0).clamp_min(0.01)
    return float(GreyLevelPoisson(rate, levels).log_prob(test).mean())


def save_parts(
    model: PoissonFactorAnalysis,
    guide: LogNormalEncoder,
    x: torch.Tensor,
    image_shape: tuple[int, int, int],
    path: Path,
) -> Path:
    """The parts W_k as grey images (each scaled to its maximum), most used first, titled with
    the latent that scales them and their share of the ink they add to the images x (N, D):
    mean_n exp(E_q[z_nk | x_n]) sum_d W_kd, normalised over k."""
    codes = encode(guide, (x,), "z")  # E_q[z | x] (N, K), read from the guide's trace
    with torch.no_grad():
        parts = model.parts
        ink = codes.exp().mean(0) * parts.sum(1)
        images = (parts / parts.amax(1, keepdim=True)).reshape(-1, *image_shape)[:, 0].numpy()
    share = (ink / ink.sum()).numpy()
    ncols = min(8, len(share))
    nrows = -(-len(share) // ncols)
    fig = Figure(figsize=(1.1 * ncols, 1.2 * nrows + 0.4))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, k in zip(axes, np.argsort(-share), strict=False):
        ax.imshow(images[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"z{k + 1}: {share[k]:.0%}", fontsize=8)
    fig.suptitle("Parts W_k, each scaled to its maximum (z_k: share of the ink)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pyro.set_rng_seed(args.seed)  # the initial weights, too
    hidden = [int(h) for h in args.hidden.split(",")]
    data = load_dataset(args.dataset, args.data_dir)
    model, guide = factory(data.input_dim, args.latent_dim, hidden, data)
    print(
        f"{data.name}: {len(data.train_x)} train / {len(data.test_x)} test images of "
        f"{data.input_dim} pixels, counts out of L = {model.levels:g}; K = {args.latent_dim} parts"
    )
    history = pyrovae.fit(
        model,
        guide,
        data.train_x,
        test_data=data.test_x,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.quiet,
    )
    test = data.test_x[: args.eval_images]
    by_guide = pyrovae.log_marginal(
        model, guide, test, num_samples=args.num_samples, progress=not args.quiet
    )
    by_prior = pyrovae.log_marginal(
        model, guide, test, num_samples=args.num_samples, proposal="prior", progress=not args.quiet
    )

    args.out.mkdir(parents=True, exist_ok=True)
    paths = write_figures(
        model,
        guide,
        test,
        args.out,
        labels=data.test_y,
        image_shape=data.image_shape,
        history=history,
        seed=args.seed,
    )
    if data.image_shape is not None:
        paths.append(
            save_parts(model, guide, data.train_x, data.image_shape, args.out / "parts.png")
        )
    paths.append(save_khat_plot(by_guide.khat.numpy(), args.out / "khat.png"))

    k, n = args.num_samples, len(test)
    rows = [
        ("test ELBO, last epoch (one draw)", history[-1]["test_elbo"], ""),
        (f"test ELBO, mean of K={k} guide draws", float(by_guide.elbo.mean()), ""),
        (f"test log p(x), IS K={k}, guide", by_guide.mean(), f"± {by_guide.mean_stderr():.2f}"),
        (
            f"test log p(x), IS K={k}, prior",
            by_prior.mean(),
            f"± {by_prior.mean_stderr():.2f} (naive Monte Carlo)",
        ),
        (
            "independent Poisson pixels, no latent",
            independent_poisson(data.train_x, test, model.levels),
            "",
        ),
    ]
    print(f"\nnats per example over {n} test images (higher is better):")
    for label, value, note in rows:
        print(f"  {label:<40}{value:10.2f} {note}")
    share = 100 * float((by_guide.khat > 0.7).float().mean())
    print(
        f"guide proposal: mean ESS {float(by_guide.ess.mean()):.1f} of {k}, k-hat > 0.7 for "
        f"{share:.1f}% of images; prior proposal: mean ESS {float(by_prior.ess.mean()):.1f}"
    )
    print(f"figures: {', '.join(p.name for p in paths)} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
