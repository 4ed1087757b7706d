"""Benchmark: a Gaussian mixture's SVI epoch through pyrovae.fit against hand-written PyTorch.

A K-component Gaussian mixture with full covariances (``--covariance``) trains by minibatch
gradient ascent on the log-likelihood sum_n log sum_k pi_k N(x_n; mu_k, Sigma_k), on MNIST's
60,000 training images projected on their first ``--pca-dim`` principal components
(standardised), one epoch at a time, in two ways alternating in one run:

- ``pyrovae``: ``pyrovae.infer.Trainer`` (what ``pyrovae.fit`` and ``pyrovae train gmm
  --inference svi`` run) on ``pyrovae.models.GaussianMixture`` with the empty guide and
  ``TraceEnum_ELBO``: the component z enumerated and summed exactly, the step captured
  (``--eager``: Pyro every step);
- ``torch`` (the named baseline): the same log-likelihood written out by hand with
  ``torch.distributions.MultivariateNormal`` and ``logsumexp``, the same parameters
  (logits, means, Cholesky factors with a log diagonal) and starting values, batches
  (a fresh permutation per epoch) and Adam (torch's default, per tensor) at ``--lr``, the
  loss divided by the batch size.

The ELBO with z summed and nothing sampled is the log-likelihood itself, so both optimise
one function. Each method runs one untimed epoch, then ``--repeats`` timed epochs,
interleaved; the script prints every epoch's seconds, the medians and last ``ratio X.XX``:
the median pyrovae epoch over the median hand-written epoch.

    python benchmarks/mixture_svi_step.py                     # K = 10, D = 30, batch 1000
    python benchmarks/mixture_svi_step.py --covariance diag --batch-size 256
"""

from __future__ import annotations

import argparse

import pyro
import torch
from alternating import alternate
from torch.distributions import MultivariateNormal

from pyrovae.data import load_dataset
from pyrovae.infer import Trainer
from pyrovae.models import GaussianMixture
from pyrovae.models.mixture import empty_guide


def principal_components(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x (N, D) projected on its first ``dim`` principal axes, each standardised: (N, dim)."""
    centred = x - x.mean(0)
    _, _, v = torch.linalg.svd(centred[:10000], full_matrices=False)
    scores = centred @ v[:dim].T
    return scores / scores.std(0)


class TorchMixture:
    """The baseline: -sum_n log sum_k pi_k N(x_n; mu_k, L_k L_k^T), by hand."""

    def __init__(self, start: GaussianMixture, x: torch.Tensor, batch_size: int, lr: float):
        self.x, self.batch_size = x, batch_size
        self.covariance = start.covariance
        self.params = {
            name: torch.nn.Parameter(value.detach().clone())
            for name, value in start.named_parameters()
        }
        self.optimizer = torch.optim.Adam(self.params.values(), lr=lr)

    def scale_tril(self) -> torch.Tensor:
        if self.covariance in ("full", "tied"):
            raw = self.params["raw_tril"]
            return raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
        variance = self.params["log_variance"].exp()
        if self.covariance == "spherical":
            variance = variance.unsqueeze(-1).expand_as(self.params["loc"])
        return torch.diag_embed(variance.sqrt())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        components = MultivariateNormal(self.params["loc"], scale_tril=self.scale_tril())
        log_joint = self.params["logits"].log_softmax(-1) + components.log_prob(x.unsqueeze(-2))
        return -torch.logsumexp(log_joint, -1).sum()

    def epoch(self) -> None:
        order = torch.randperm(len(self.x))
        for start in range(0, len(order), self.batch_size):
            x = self.x[order[start : start + self.batch_size]]
            (self.loss(x) / x.shape[0]).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class PyrovaeMixture:
    """pyrovae's Trainer on (GaussianMixture, empty guide) with TraceEnum_ELBO."""

    def __init__(self, model: GaussianMixture, x, batch_size: int, lr: float, capture: bool):
        self.trainer = Trainer(
            model,
            empty_guide,
            x,
            batch_size=batch_size,
            lr=lr,
            objective="enum",
            progress=False,
            capture=capture,
            seed=0,
        )

    def epoch(self) -> None:
        self.trainer.run(self.trainer.epoch + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--pca-dim", type=int, default=30)
    parser.add_argument("--covariance", default="full")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--dataset", default="mnist", help="mnist (or digits, for a quick try)")
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per method")
    parser.add_argument("--data-dir", default=None, help="where MNIST is ($PYROVAE_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--eager", action="store_true", help="pyrovae without capture")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    images = load_dataset(args.dataset, args.data_dir).train_x[: args.rows]
    x = principal_components(images, args.pca_dim)
    model = GaussianMixture(args.components, args.pca_dim, args.covariance)
    with torch.no_grad():
        model.loc.copy_(x[torch.randperm(len(x))[: args.components]])
    loops = {
        "torch": TorchMixture(model, x, args.batch_size, args.lr),
        "pyrovae": PyrovaeMixture(model, x, args.batch_size, args.lr, capture=not args.eager),
    }
    print(
        f"# Gaussian mixture SVI, K {args.components}, {args.covariance} covariances, "
        f"{args.dataset} {len(x)} x {args.pca_dim} (PCA), batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, pyro {pyro.__version__}"
    )
    steps = -(-len(x) // args.batch_size)
    median = alternate(loops, args.repeats, steps)
    trainer = loops["pyrovae"].trainer
    captured = sum(graph is not None for graph in trainer.loss.graphs.values())
    print(f"pyrovae: {captured} of {len(trainer.loss.graphs)} batch shapes captured")
    with torch.no_grad():
        mean_ll = {
            "torch": -float(loops["torch"].loss(x)) / len(x),
            "pyrovae": float(model.log_prob(x).mean()),
        }
    print(
        "mean log-likelihood after training: "
        + "  ".join(f"{k} {v:.3f}" for k, v in mean_ll.items())
    )
    print(f"ratio {median['pyrovae'] / median['torch']:.2f}")


if __name__ == "__main__":
    main()
