"""Diagnosis for issue 35: how well the pretrained codes cluster, by pretraining epoch.

A mixture-VAE run saves its pretraining in ``checkpoint.pt`` after every epoch, marked
``phase: initializing``, until the pretraining ends. Copies of that file taken at several
epochs (``cp RUN/checkpoint.pt pretrain-epoch40.pt`` while the run pretrains) are read here.
For each copy the encoder's mean codes E_q[z | x] of the training rows are computed, and the
test rows are clustered three ways:

- ``em_diag``: EM with diagonal covariances and 10 k-means++ starts on the training codes, as
  ``--init em`` initialises the mixture (VaDE's initialisation);
- ``em_full``: the same with full covariances;
- ``kmeans``: k-means (10 starts) on the training codes, test codes sent to the nearest mean.

Test accuracy (Hungarian-matched), ARI and NMI against the labels, which are used for scoring
only. This measures the start SVI is given, one pretraining length at a time, with the run's
own networks and data:

    python benchmarks/mixture_vae_pretraining_codes.py --data-dir ../shared/data/mnist \\
        pretrain-epoch49.pt pretrain-epoch100.pt --json codes.json

``--restarts N`` also runs N single-start k-means on each checkpoint's training codes (the
starts ``--init code-kmeans`` chooses among) and reports, per start, its inertia (mean
squared distance to the nearest centre), the mean log p(z) of the training codes under the
mixture ``--init code-kmeans`` would build from its clusters (component k the Gaussian of
the codes of cluster k, weight its share of the rows) and its test accuracy: whether the
start decides the end, and whether a label-free score of the start picks a better one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pyrovae.data import load_dataset
from pyrovae.diagnostics.clustering import clustering_scores
from pyrovae.diagnostics.mixture_vae_figures import mean_codes
from pyrovae.guides import GaussianEncoder
from pyrovae.kmeans import kmeans, squared_distances
from pyrovae.models import MixturePriorVAE, fit_mixture
from pyrovae.runs import RECIPES, TrainConfig
from pyrovae.runs.recipes.vae import network_kwargs
from pyrovae.runs.registry import read_config


def encoder_of(path: Path) -> tuple[GaussianEncoder, TrainConfig, int]:
    """The encoder of a pretraining checkpoint, its run's config and its pretraining epoch."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("phase") != "initializing":
        raise SystemExit(f"{path} is not a checkpoint taken while the run was pretraining")
    config = read_config(state["config"])
    guide = GaussianEncoder(**network_kwargs(config))
    # The pretraining's guide wraps the encoder (MeanCodeGuide: "encoder.*") unless it
    # pretrains as a VAE (the encoder itself).
    saved = state["initialization"]["guide"]
    guide.load_state_dict({k.removeprefix("encoder."): v for k, v in saved.items()})
    guide.eval()
    return guide, config, int(state["initialization"]["epoch"])


def code_kmeans_prior(config: TrainConfig) -> MixturePriorVAE:
    """The run's mixture-prior VAE with full covariances, in float64: the model whose prior
    ``initialize_prior_from_clusters`` sets as ``--init code-kmeans --covariance full`` does
    (whatever covariance the checkpoint's own run was given)."""
    model, _ = RECIPES["mixture-vae"].pair(config.with_options(covariance="full"))
    return model.double()


def scores_of(path: Path, data, seed: int, restarts: int = 0) -> dict:
    guide, config, epoch = encoder_of(path)
    with torch.no_grad():
        train = mean_codes(guide, data.train_x).double()
        test = mean_codes(guide, data.test_x).double()
    row: dict = {"checkpoint": str(path), "pretrain": config.pretrain, "epoch": epoch}
    for covariance in ("diag", "full"):
        start = time.perf_counter()
        mixture, _ = fit_mixture(
            train, 10, covariance=covariance, n_init=10, seed=seed, progress=False
        )
        row[f"em_{covariance}"] = {
            **clustering_scores(mixture.predict(test), data.test_y),
            "seconds": time.perf_counter() - start,
        }
    result = kmeans(train, 10, n_init=10, generator=torch.Generator().manual_seed(seed))
    nearest = squared_distances(test, result.centres.to(test.dtype)).argmin(0)
    row["kmeans"] = clustering_scores(nearest, data.test_y)
    if restarts:
        prior = code_kmeans_prior(config)
        row["kmeans_starts"] = [
            start_scores(prior, train, test, data.test_y, seed + s) for s in range(restarts)
        ]
    return row


def start_scores(
    prior: MixturePriorVAE, train: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor, seed: int
) -> dict:
    """One single-start k-means on the training codes (N, L): its inertia, the mean log p(z)
    of the training codes under ``prior`` after ``initialize_prior_from_clusters`` on the
    start's clusters (component k the Gaussian of the codes of cluster k, weight their share:
    the start ``--init code-kmeans`` gives SVI), and its test scores (test codes to the
    nearest centre)."""
    result = kmeans(train, 10, n_init=1, generator=torch.Generator().manual_seed(seed))
    nearest = squared_distances(test, result.centres.to(test.dtype)).argmin(0)
    prior.initialize_prior_from_clusters(train, result.labels)
    with torch.no_grad():
        code_log_likelihood = float(prior.prior_log_prob(train).mean())
    return {
        "seed": seed,
        "inertia": result.inertia / len(train),
        "code_log_likelihood": code_log_likelihood,
        **clustering_scores(nearest, test_y),
    }


def print_starts(row: dict) -> None:
    """The spread of the single k-means starts, and what each label-free score picks."""
    starts = row["kmeans_starts"]
    accuracy = [s["accuracy"] for s in starts]
    by_inertia = min(starts, key=lambda s: s["inertia"])
    by_likelihood = max(starts, key=lambda s: s["code_log_likelihood"])
    print(
        f"{Path(row['checkpoint']).name}: {len(starts)} k-means starts, test accuracy "
        f"{100 * min(accuracy):.2f}% to {100 * max(accuracy):.2f}%; the lowest inertia's "
        f"{100 * by_inertia['accuracy']:.2f}%, the highest log p(z)'s "
        f"{100 * by_likelihood['accuracy']:.2f}%; correlation with accuracy: inertia "
        f"{correlation([s['inertia'] for s in starts], accuracy):+.2f}, log p(z) "
        f"{correlation([s['code_log_likelihood'] for s in starts], accuracy):+.2f}"
    )


def correlation(a: list[float], b: list[float]) -> float:
    return float(torch.corrcoef(torch.tensor([a, b], dtype=torch.float64))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", help="folder with the MNIST idx files (not for digits)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seed", type=int, default=0, help="EM's and k-means' starts")
    parser.add_argument("--json", help="write every number to this file")
    parser.add_argument(
        "--restarts", type=int, default=0, help="also N single-start k-means on each checkpoint"
    )
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.data_dir)
    # In the order of the pretraining epochs the checkpoints hold, whatever their names.
    rows = sorted((scores_of(path, data, args.seed, args.restarts) for path in args.checkpoints),
                  key=lambda row: row["epoch"])  # fmt: skip
    print("| checkpoint | pretraining epoch | EM diag | EM full | k-means on codes |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        cells = [f"{100 * row[k]['accuracy']:.2f}%" for k in ("em_diag", "em_full", "kmeans")]
        print(f"| {Path(row['checkpoint']).name} | {row['epoch']} | " + " | ".join(cells) + " |")
    for row in rows:
        if "kmeans_starts" in row:
            print_starts(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
