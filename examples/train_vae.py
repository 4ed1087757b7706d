"""Train a variational autoencoder, then look at it and measure it.

The model (a deep latent Gaussian model, Kingma & Welling 2014) and its guide:

    z ~ N(0, I_L)                          prior
    x | z ~ p(x | decoder(z))              Bernoulli, continuous Bernoulli or Gaussian
    q(z | x) = N(mu(x), diag sigma(x)^2)   the amortized guide (an MLP encoder)

fit by SVI on the beta-weighted ELBO E_q[log p(x | z)] - beta KL(q(z | x) || p(z))
(beta = 1 is the ELBO, beta > 1 the beta-VAE of Higgins et al. 2017). Afterwards the
script writes prior samples, reconstructions, latent traversals, interpolations and the
latent map, and estimates the test log-likelihood log p(x) by importance sampling with
the guide as proposal (K draws per image; the ELBO is its K = 1 case).

    python examples/train_vae.py                       # digits, about a minute on 2 cores
    python examples/train_vae.py --beta 4 --out examples-out/beta4
    python examples/train_vae.py --dataset mnist --data-dir ../shared/data/mnist \\
        --latent-dim 50 --hidden 400 --epochs 50 --num-samples 5000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import pyrovae
from pyrovae.data import DataSplits, binarize, binarize_fixed, load_dataset
from pyrovae.diagnostics import write_figures
from pyrovae.guides import GaussianEncoder
from pyrovae.models import VAE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", help="digits, mnist, fashion-mnist or a file")
    p.add_argument("--data-dir", help="where the MNIST-family files are (never downloaded)")
    p.add_argument(
        "--likelihood",
        choices=["auto", "bernoulli", "continuous-bernoulli", "gaussian"],
        default="auto",
        help="p(x | z); auto: continuous Bernoulli for digits' grey values, Bernoulli on "
        "dynamically binarized MNIST",
    )
    p.add_argument("--beta", type=float, default=1.0, help="KL weight (beta-VAE when > 1)")
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--hidden", type=int, nargs="+", default=[256], help="MLP hidden widths")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-samples", type=int, default=1000, help="K of the IS log-likelihood")
    p.add_argument("--eval-images", type=int, default=500, help="test images for log p(x)")
    p.add_argument("--out", type=Path, default=Path("examples-out/train_vae"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def choose_likelihood(args: argparse.Namespace, data: DataSplits) -> tuple[str, bool]:
    """The likelihood and whether to binarize (resampled each epoch, test rows once)."""
    if args.likelihood != "auto":
        return args.likelihood, False
    if data.is_binary:
        return "bernoulli", False
    if data.name == "digits" or not data.is_unit_interval:
        return ("continuous-bernoulli" if data.is_unit_interval else "gaussian"), False
    return "bernoulli", True  # MNIST grey levels as probabilities: the benchmark convention


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_dataset(args.dataset, args.data_dir)
    likelihood, binarized = choose_likelihood(args, data)
    test_x = binarize_fixed(data.test_x, seed=0) if binarized else data.test_x
    print(f"{data!r}; likelihood {likelihood}{' (binarized)' if binarized else ''}")

    model = VAE(data.input_dim, args.latent_dim, args.hidden, likelihood, beta=args.beta)
    guide = GaussianEncoder(data.input_dim, args.latent_dim, args.hidden)
    history = pyrovae.fit(
        model,
        guide,
        data.train_x,
        test_data=test_x,
        epochs=args.epochs,
        batch_size=args.batch_size,
        transform=binarize if binarized else None,
        seed=args.seed,
        progress=not args.quiet,
    )
    model.eval(), guide.eval()

    figures = write_figures(
        model,
        guide,
        test_x,
        args.out,
        labels=data.test_y,
        image_shape=data.image_shape,
        history=history,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    estimate = pyrovae.log_marginal(
        model,
        guide,
        test_x[: args.eval_images],
        num_samples=args.num_samples,
        progress=not args.quiet,
    )
    print(f"figures: {', '.join(str(path) for path in figures)}")
    print(f"test ELBO (beta = 1 bound, one sample): {history[-1]['test_elbo']:.2f} nats")
    print(
        f"test log p(x), IS with K = {args.num_samples} on {len(estimate.log_likelihood)} images: "
        f"{estimate.mean():.2f} +- {estimate.mean_stderr():.2f} nats; "
        f"k-hat > 0.7 on {100 * float((estimate.khat > 0.7).float().mean()):.1f}% of them"
    )


if __name__ == "__main__":
    main()
