"""Benchmark: pyrovae's EM for the Gaussian mixture against scikit-learn's GaussianMixture.

Baseline (named): ``sklearn.mixture.GaussianMixture(K, covariance_type=..., max_iter=M,
tol=0)``, numpy, float64. pyrovae runs ``pyrovae.models.fit_mixture(x, K, max_iter=M,
tol=-inf, seed=0)``: greedy k-means++ seeds, one M-step on the hard assignments, M EM
iterations (the E-step is the program's enumeration in closed form, float64, in chunks).
Both start from the same parameters: pyrovae's initial ones (the same seed, computed once
beforehand) are given to scikit-learn as ``weights_init``, ``means_init`` and
``precisions_init``; scikit-learn still runs its own k-means++ seeding and first M-step before
replacing them, so each timing pays for one seeding, one M-step and M iterations. The script
prints per case the seconds of each, their final mean log-likelihoods (nats per example; from
one start they agree to rounding) and ``ratio X.XX`` (scikit-learn seconds / pyrovae seconds,
higher is better for pyrovae), measured in one run on the same machine and threads.

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
from pyrovae.models import GaussianMixture, fit_mixture


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


def sklearn_start(model: GaussianMixture) -> dict:
    """pyrovae's initial parameters in scikit-learn's ``*_init`` arguments (precisions)."""
    covariances = model.covariances.detach().double()
    if model.covariance in ("full", "tied"):
        precisions = torch.cholesky_inverse(torch.linalg.cholesky(covariances))
    else:
        precisions = 1 / covariances
    return {
        "weights_init": model.weights.detach().double().numpy(),
        "means_init": model.loc.detach().double().numpy(),
        "precisions_init": precisions.numpy(),
    }


def time_sklearn(x: np.ndarray, k: int, covariance: str, iters: int, start: dict):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SklearnMixture

    model = SklearnMixture(
        k, covariance_type=covariance, max_iter=iters, tol=0, init_params="k-means++", **start
    )
    begin = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x)
    seconds = time.perf_counter() - begin
    return seconds, float(model.score(x)), model.n_iter_


def time_pyrovae(
    x: torch.Tensor,
    k: int,
    covariance: str,
    iters: int,
    seed: int = 0,
    compute_dtype: torch.dtype = torch.float64,
):
    begin = time.perf_counter()
    model, history = fit_mixture(
        x,
        k,
        covariance=covariance,
        max_iter=iters,
        tol=-math.inf,
        progress=False,
        seed=seed,
        compute_dtype=compute_dtype,
    )
    seconds = time.perf_counter() - begin
    assert history.iterations == iters
    return seconds, history.restarts[0]


def compare(
    name: str, x: torch.Tensor, k: int, covariance: str, iters: int, float32: bool = False
) -> None:
    """Time both from one start: pyrovae's k-means++ seeds and first M-step (seed 0), given
    to scikit-learn as ``weights_init``, ``means_init``, ``precisions_init``. Each still pays
    for its own k-means++ seeding and one M-step (scikit-learn computes and then replaces
    them), then runs ``iters`` iterations; the final log-likelihoods should agree. With
    ``float32``, pyrovae also runs with ``compute_dtype=torch.float32`` (float32 products,
    float64 sums across chunks), printed on its own line before the float64 ratio."""
    x = x.double()
    start = GaussianMixture(k, x.shape[1], covariance).double().initialize(x, seed=0)
    ours, ours_ll = time_pyrovae(x, k, covariance, iters, seed=0)
    theirs, theirs_ll, their_iters = time_sklearn(
        x.numpy(), k, covariance, iters, sklearn_start(start)
    )
    print(
        f"{name}: N={x.shape[0]} D={x.shape[1]} K={k} {covariance}, {iters} iterations "
        f"from one start: scikit-learn {theirs:.2f} s ({their_iters} iterations, log-lik "
        f"{theirs_ll:.6f}), pyrovae {ours:.2f} s (log-lik {ours_ll:.6f}), difference "
        f"{abs(ours_ll - theirs_ll):.1e}"
    )
    if float32:
        fast, fast_ll = time_pyrovae(x, k, covariance, iters, seed=0, compute_dtype=torch.float32)
        print(
            f"{name}, pyrovae with float32 products: {fast:.2f} s (log-lik {fast_ll:.6f}, "
            f"relative difference to scikit-learn {abs(fast_ll - theirs_ll) / abs(theirs_ll):.1e})"
            f": ratio {theirs / fast:.2f}"
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
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["synthetic", "digits", "mnist"],
        choices=["synthetic", "digits", "mnist"],
        help="which comparisons to run",
    )
    parser.add_argument("--rows", type=int, default=100_000, help="N of the synthetic cases")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    iters = args.iterations
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads: torch {torch.get_num_threads()}")
    cases = args.cases
    for covariance in ("full", "diag", "tied", "spherical"):
        if "synthetic" in cases:
            compare("synthetic", blobs(args.rows, 10, 10), 10, covariance, iters)
    if "digits" in cases:
        compare("digits", load_dataset("digits").train_x, 10, "full", iters)
    if "mnist" in cases and Path(args.data_dir).is_dir():
        mnist = load_dataset("mnist", args.data_dir).train_x
        compare("mnist", mnist, 10, "diag", iters, float32=True)
    elif "mnist" in cases:
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
