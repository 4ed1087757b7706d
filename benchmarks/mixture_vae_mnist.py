"""Benchmark: clustering MNIST with the mixture-prior VAE (``pyrovae train mixture-vae``).

For each seed, one run as a user runs it: ``pyrovae train mixture-vae --dataset mnist
--components 10`` (the recipe's pretraining and initialisation, then SVI; the numbers in
docs/benchmarks/models.md were measured with ``--extra "--pretrain ae --init em
--covariance diag --em-restarts 3"``, the defaults of the time), then ``pyrovae evaluate``
(IS log-likelihood with c summed inside every weight, the ELBO, and the clustering of the
10,000 test images by argmax_c p(c | E_q[z | x]) against their labels: Hungarian-matched
accuracy, ARI, NMI). No label is used in training or in choosing anything; every setting is
fixed beforehand, and every seed's result is reported.

Beside it, measured in the same run:

- a plain VAE (z ~ N(0, I)) with the same networks, trained for the same number of epochs as
  the mixture-prior VAE's pretraining plus training, evaluated with the same IS;
- pyrovae's own Gaussian mixture (EM, K = 10, :func:`pyrovae.models.fit_mixture`) on the
  pixels (diagonal covariances) and on the top 50 principal components (full covariances),
  its clusters on the test images scored the same way.

    python benchmarks/mixture_vae_mnist.py --data-dir ../shared/data --seeds 0,1,2

Prints one line per run and a Markdown table; ``--json FILE`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pyrovae.cli import main
from pyrovae.data import load_dataset
from pyrovae.diagnostics.clustering import clustering_scores
from pyrovae.models import fit_mixture


def run_cli(args: list[str]) -> float:
    start = time.perf_counter()
    code = main(args)
    if code != 0:
        raise SystemExit(f"pyrovae {' '.join(args)} failed with exit status {code}")
    return time.perf_counter() - start


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def mixture_baselines(dataset: str, data_dir: str, seed: int) -> dict[str, dict]:
    """EM mixtures on pixels (diag) and on 50 principal components (full), scored on test."""
    data = load_dataset(dataset, data_dir)
    train, test = data.train_x.double(), data.test_x.double()
    out = {}
    start = time.perf_counter()
    model, _ = fit_mixture(train, 10, covariance="diag", seed=seed, progress=False)
    out["gmm_pixels"] = {
        **clustering_scores(model.predict(test), data.test_y),
        "seconds": time.perf_counter() - start,
    }
    start = time.perf_counter()
    mean = train.mean(0)
    _, _, v = torch.linalg.svd(train - mean, full_matrices=False)
    basis = v[:50].T
    model, _ = fit_mixture((train - mean) @ basis, 10, covariance="full", seed=seed, progress=False)
    out["gmm_pca50"] = {
        **clustering_scores(model.predict((test - mean) @ basis), data.test_y),
        "seconds": time.perf_counter() - start,
    }
    return out


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with the MNIST idx files")
    parser.add_argument("--dataset", default="mnist", help="digits for a quick check")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; '' for none")
    parser.add_argument("--out", default="runs/benchmark-mixture-vae")
    parser.add_argument("--hidden", default="500,500,2000")
    parser.add_argument("--latent-dim", default="10")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", default="256")
    parser.add_argument("--lr", default="2e-3")
    parser.add_argument("--extra", default="", help="more options for train mixture-vae")
    parser.add_argument("--num-samples", default="100", help="IS samples per test image")
    parser.add_argument("--no-vae", action="store_true", help="skip the plain VAE")
    parser.add_argument("--no-baselines", action="store_true", help="skip the EM mixtures")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args()
    out = Path(args.out)
    common = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--hidden", args.hidden]
    common += ["--latent-dim", args.latent_dim, "--batch-size", args.batch_size, "--quiet"]
    common += ["--lr", args.lr, "--overwrite"]
    results: dict = {"settings": vars(args), "runs": []}
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        run = out / f"mixture-vae-seed{seed}"
        train = ["train", "mixture-vae", "--out", str(run), "--seed", str(seed), *common]
        train += ["--epochs", str(args.epochs), "--pretrain-epochs", str(args.pretrain_epochs)]
        train += args.extra.split()
        seconds = run_cli(train)
        run_cli(["evaluate", str(run), "--num-samples", args.num_samples, "--quiet"])
        report = read(run / "eval.json")
        row = {
            "seed": seed,
            "seconds": seconds,
            **report["test_clustering"],
            "test_log_likelihood": report["test_log_likelihood"],
            "test_elbo": report["test_elbo"],
        }
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
    if not args.no_vae:
        run = out / "vae"
        epochs = args.epochs + args.pretrain_epochs
        seconds = run_cli(["train", "vae", "--out", str(run), "--epochs", str(epochs), *common])
        run_cli(["evaluate", str(run), "--num-samples", args.num_samples, "--quiet"])
        report = read(run / "eval.json")
        results["vae"] = {
            "epochs": epochs,
            "seconds": seconds,
            "test_log_likelihood": report["test_log_likelihood"],
            "test_elbo": report["test_elbo"],
        }
        print(json.dumps(results["vae"]), flush=True)
    if not args.no_baselines:
        results["baselines"] = mixture_baselines(args.dataset, args.data_dir, 0)
        print(json.dumps(results["baselines"]), flush=True)
    runs = results["runs"]
    print("\n| model | test accuracy (%) | ARI | NMI | test log p(x) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    if runs:
        accuracy = np.array([r["accuracy"] for r in runs])
        print(
            f"| mixture-prior VAE, {len(runs)} seeds | {100 * accuracy.mean():.2f} ± "
            f"{100 * accuracy.std():.2f} | "
            f"{np.mean([r['adjusted_rand_index'] for r in runs]):.3f} | "
            f"{np.mean([r['normalized_mutual_info'] for r in runs]):.3f} | "
            f"{np.mean([r['test_log_likelihood'] for r in runs]):.2f} |"
        )
    if "vae" in results:
        vae = results["vae"]["test_log_likelihood"]
        print(f"| VAE, same networks and epochs | | | | {vae:.2f} |")
    for name, scores in results.get("baselines", {}).items():
        print(
            f"| {name} (EM, K = 10) | {100 * scores['accuracy']:.2f} | "
            f"{scores['adjusted_rand_index']:.3f} | {scores['normalized_mutual_info']:.3f} | |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main_benchmark()
