"""Benchmark: pyrovae's EM for the Gaussian mixture against scikit-learn's GaussianMixture.

Baseline (named): ``sklearn.mixture.GaussianMixture(K, covariance_type=..., max_iter=M,
tol=0, init_params="k-means++")``: the same algorithm (greedy k-means++ seeds, one M-step on
the hard assignments, M EM iterations, a final E-step) in numpy. pyrovae runs
``pyrovae.models.fit_mixture(x, K, max_iter=M, tol=-inf)``: the E-step from the Pyro program by
enumeration, float64, streamed in chunks. Both run exactly M iterations from their own
k-means++ seeds on the same data and the same threads; the script prints the seconds of each,
their final mean log-likelihoods (nats per example; the seeds differ, so they may differ a
little), and per case ``ratio X.XX`` (scikit-learn seconds / pyrovae seconds, higher is better
for pyrovae), measured in one run on the same machine.

    python benchmarks/gmm_em.py                       # synthetic, digits, MNIST (if present)
    python benchmarks/gmm_em.py --large 10000000      # also N = 10^7 rows in 10-D: time, memory

``--data-dir`` is the folder with the MNIST idx files (default ../shared/data/mnist).
"""

from __future__ import annotations

import argparse
import math
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pyrovae.data import load_dataset
from pyrovae.models import fit_mixture


def blobs(n: int, d: int, k: int, seed: int = 0) -> torch.Tensor:
    """n rows from k anisotropic Gaussian clusters in d dimensions, float64."""
    g = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(k, d, generator=g, dtype=torch.float64)
    mixing = torch.randn(k, d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    parts = []
    for start in range(0, n, 1_000_000):  # in blocks: mixing[z] is (rows, d, d)
        rows = min(1_000_000, n - start)
        z = torch.randint(k, (rows,), generator=g)
        noise = torch.randn(rows, d, 1, generator=g, dtype=torch.float64)
        parts.append(centres[z] + (mixing[z] @ noise).squeeze(-1))
    return torch.cat(parts)


def time_sklearn(x: np.ndarray, k: int, covariance: str, iters: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(
        k, covariance_type=covariance, max_iter=iters, tol=0, init_params="k-means++"
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x)
    seconds = time.perf_counter() - start
    return seconds, float(model.score(x))


def time_pyrovae(x: torch.Tensor, k: int, covariance: str, iters: int) -> tuple[float, float]:
    start = time.perf_counter()
    model, history = fit_mixture(
        x, k, covariance=covariance, max_iter=iters, tol=-math.inf, progress=False
    )
    seconds = time.perf_counter() - start
    assert history.iterations == iters
    return seconds, history.restarts[0]


def compare(name: str, x: torch.Tensor, k: int, covariance: str, iters: int) -> None:
    x = x.double()
    ours, ours_ll = time_pyrovae(x, k, covariance, iters)
    theirs, theirs_ll = time_sklearn(x.numpy(), k, covariance, iters)
    print(
        f"{name}: N={x.shape[0]} D={x.shape[1]} K={k} {covariance}, {iters} iterations: "
        f"scikit-learn {theirs:.2f} s (log-lik {theirs_ll:.4f}), pyrovae {ours:.2f} s "
        f"(log-lik {ours_ll:.4f})"
    )
    print(f"ratio {theirs / ours:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="EM iterations per fit")
    parser.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"),
        help="folder with the MNIST idx files",
    )
    parser.add_argument(
        "--large", type=int, metavar="N", help="also fit N rows in 10-D (pyrovae only)"
    )
    args = parser.parse_args()
    iters = args.iterations
    print(f"threads: torch {torch.get_num_threads()}")
    for covariance in ("full", "diag", "tied", "spherical"):
        compare("synthetic", blobs(100_000, 10, 10), 10, covariance, iters)
    digits = load_dataset("digits")
    compare("digits", digits.train_x, 10, "full", iters)
    if Path(args.data_dir).is_dir():
        mnist = load_dataset("mnist", args.data_dir)
        compare("mnist", mnist.train_x, 10, "diag", iters)
    else:
        print(f"mnist: skipped, {args.data_dir} is absent")
    if args.large:
        x = blobs(args.large, 10, 10).float()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        seconds, ll = time_pyrovae(x, 10, "full", 5)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"large: N={args.large} D=10 K=10 full float32 data, 5 iterations: {seconds:.1f} s, "
            f"log-lik {ll:.4f}, peak RSS {peak:.2f} GiB (data {x.numel() * 4 / 2**30:.2f} GiB, "
            f"RSS before the fit {before:.2f} GiB)"
        )


if __name__ == "__main__":
    main()
