"""Benchmark: pyrovae.log_marginal against a loop over pyro.infer.Importance.

Baseline (named): Pyro's own importance sampler, ``pyro.infer.Importance(model, guide,
num_samples=K).run(x_i).get_log_normalizer()``, one test image at a time: K sequential
guide/model traces per image. pyrovae's ``log_marginal`` runs one vectorized pass per chunk
of particles and per batch of images. Both estimate log p(x_i) with the guide as proposal;
the script checks that the two estimates agree within their Monte Carlo error, then prints
the seconds of each and, last, ``ratio X.XX`` (Importance loop / log_marginal, higher is
better for pyrovae), measured in one run on the same machine.

    python benchmarks/log_marginal.py --run runs/mnist-vae --images 200 --num-samples 1000
    python benchmarks/log_marginal.py --run runs/mnist-vae --full   # K=5000, whole test set

``--run`` is a directory written by ``pyrovae train`` (MNIST-sized for the numbers in the
README); without it an untrained 784-400-50 VAE is timed, which costs the same.
"""

from __future__ import annotations

import argparse
import math
import time

import pyro
import torch

from pyrovae.guides import GaussianEncoder
from pyrovae.infer import log_marginal
from pyrovae.models import VAE


def load(run_dir: str | None):
    if run_dir:
        from pyrovae.runs import load_run

        run = load_run(run_dir)
        return run.model, run.guide, run.test_inputs()
    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.full((10000, 784), 0.13))
    return VAE(784, 50, (400,)), GaussianEncoder(784, 50, (400,)), x


def importance_loop(model, guide, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x_i) for each row by pyro.infer.Importance, one image (a batch of 1) at a time."""
    out = []
    with torch.no_grad():
        for row in x:
            posterior = pyro.infer.Importance(model, guide, num_samples=k).run(row[None])
            out.append(posterior.get_log_normalizer())
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a pyrovae run directory (default: an untrained VAE)")
    parser.add_argument("--images", type=int, default=200, help="test images for the comparison")
    parser.add_argument("--num-samples", type=int, default=1000, help="K per image")
    parser.add_argument(
        "--full", action="store_true", help="also time K=5000 over the whole test set"
    )
    args = parser.parse_args()
    model, guide, test_x = load(args.run)
    x = test_x[: args.images]
    k = args.num_samples
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    ours = log_marginal(model, guide, x, num_samples=k, progress=False)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    baseline = importance_loop(model, guide, x, k)
    baseline_seconds = time.perf_counter() - start

    diff = ours.log_likelihood - baseline.double()
    # Two independent estimates with the same K: their difference has about sqrt(2) SE.
    z = diff.mean() / (math.sqrt(2) * ours.mean_stderr())
    print(f"{len(x)} images, K={k}")
    print(f"log_marginal:            {ours_seconds:8.2f} s   mean log p(x) {ours.mean():.3f}")
    print(
        f"pyro.infer.Importance:   {baseline_seconds:8.2f} s   mean log p(x) {baseline.mean():.3f}"
    )
    print(f"difference {diff.mean():+.3f} nats ({z:+.1f} standard errors)")
    if args.full:
        start = time.perf_counter()
        full = log_marginal(model, guide, test_x, num_samples=5000, progress=True)
        seconds = time.perf_counter() - start
        print(
            f"K=5000 over {len(test_x)} test images: {seconds:.0f} s, "
            f"log p(x) {full.mean():.2f} ± {full.mean_stderr():.2f}"
        )
    print(f"ratio {baseline_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()
