"""Benchmark: one SVI epoch through pyrovae.fit against a hand-written PyTorch loop.

The same 784-400-50 MLP VAE (Bernoulli likelihood, Gaussian encoder, Adam at lr 1e-3,
the loss divided by the batch size) trains on 60,000 x 784 binary rows held in memory,
one epoch at a time, in three ways, alternating in one run:

- ``pyrovae``: ``pyrovae.infer.Trainer`` (what ``pyrovae.fit`` runs) on ``pyrovae.models.VAE``
  and ``pyrovae.guides.GaussianEncoder``;
- ``torch`` (the named baseline): a hand-written loop, the reparameterised ELBO written
  out by hand with the same networks, batching (randperm, index) and optimizer;
- ``pyro``: Pyro's own ``SVI.step`` loop as in Pyro's examples/vae (``pyro.module``,
  ``pyro.optim.Adam``), for context;
- ``torch-fused``: the hand-written loop with ``torch.optim.Adam(..., fused=True)``, the
  optimizer pyrovae uses by default, for a comparison of the rest of the step.

The KL term matches the objective: sampled (log q(z|x) - log p(z) at the drawn z) for
``--objective elbo`` (Trace_ELBO), in closed form for ``--objective meanfield``
(TraceMeanField_ELBO). Each method first runs one untimed epoch (set-up, capture), then
``--repeats`` timed epochs, interleaved; the script prints every epoch's seconds, the
medians, the ratio of Pyro's loop to the baseline, and last ``ratio X.XX``: the median
pyrovae epoch over the median hand-written epoch.

    python benchmarks/svi_step.py --batch-size 128
    python benchmarks/svi_step.py --batch-size 32
    python benchmarks/svi_step.py --batch-size 128 --device cuda
    python benchmarks/svi_step.py --eval-images 10000   # + evaluation at K = 5000

``--eval-images N`` also times, beside an epoch, what evaluation costs on N test rows
(MNIST's test set is 10,000): the one-sample test ELBO that ``fit`` computes after every
epoch (``pyrovae.infer.evaluate_elbo``), and ``pyrovae.log_marginal`` at K = 5000.
"""

from __future__ import annotations

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from alternating import alternate
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Normal, kl_divergence

from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer, evaluate_elbo, log_marginal
from pyrovae.models import VAE

D, HIDDEN, LATENT = 784, 400, 50


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchLoop:
    """The baseline: the VAE's -ELBO written out by hand, one Adam step per batch."""

    def __init__(
        self, x: torch.Tensor, batch_size: int, analytic_kl: bool, fused: bool = False
    ) -> None:
        self.x, self.batch_size, self.analytic_kl = x, batch_size, analytic_kl
        self.encoder = GaussianEncoder(D, LATENT, (HIDDEN,)).net.to(x.device)
        self.decoder = VAE(D, LATENT, (HIDDEN,)).decoder.to(x.device)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-3, fused=fused or None)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, raw_scale = self.encoder(x).split(LATENT, dim=-1)
        scale = F.softplus(raw_scale) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        q, p = Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(loc))
        if self.analytic_kl:
            kl = kl_divergence(q, p).sum(-1)
        else:
            kl = (q.log_prob(z) - p.log_prob(z)).sum(-1)
        return -(log_px - kl).sum()

    def epoch(self) -> None:
        order = torch.randperm(len(self.x), device=self.x.device)
        for start in range(0, len(order), self.batch_size):
            x = self.x[order[start : start + self.batch_size]]
            loss = self.loss(x)
            (loss / x.shape[0]).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class PyroLoop:
    """Pyro's examples/vae: ``pyro.module`` in model and guide, ``SVI.step`` per batch."""

    def __init__(self, x: torch.Tensor, batch_size: int, analytic_kl: bool) -> None:
        self.x, self.batch_size = x, batch_size
        self.encoder = GaussianEncoder(D, LATENT, (HIDDEN,)).net.to(x.device)
        self.decoder = VAE(D, LATENT, (HIDDEN,)).decoder.to(x.device)
        elbo = TraceMeanField_ELBO() if analytic_kl else Trace_ELBO()
        self.svi = SVI(self.model, self.guide, pyro.optim.Adam({"lr": 1e-3}), loss=elbo)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=1.0 / x.shape[0]):
            loc = x.new_zeros(x.shape[0], LATENT)
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=1.0 / x.shape[0]):
            loc, raw_scale = self.encoder(x).split(LATENT, dim=-1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1))

    def epoch(self) -> None:
        order = torch.randperm(len(self.x), device=self.x.device)
        for start in range(0, len(order), self.batch_size):
            self.svi.step(self.x[order[start : start + self.batch_size]])


class PyrovaeLoop:
    """pyrovae's Trainer: the loop ``pyrovae.fit`` runs, one epoch per call."""

    def __init__(self, x: torch.Tensor, batch_size: int, analytic_kl: bool, capture: bool):
        model = VAE(D, LATENT, (HIDDEN,)).to(x.device)
        guide = GaussianEncoder(D, LATENT, (HIDDEN,)).to(x.device)
        self.trainer = Trainer(
            model,
            guide,
            x,
            batch_size=batch_size,
            objective="meanfield" if analytic_kl else "elbo",
            progress=False,
            device=x.device,
            capture=capture,
            seed=0,
        )

    def epoch(self) -> None:
        self.trainer.run(self.trainer.epoch + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--objective", choices=["elbo", "meanfield"], default="elbo")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per method")
    parser.add_argument("--rows", type=int, default=60000, help="training rows (MNIST: 60000)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--eager", action="store_true", help="pyrovae without capture")
    parser.add_argument("--skip-pyro", action="store_true", help="leave out Pyro's SVI loop")
    parser.add_argument(
        "--eval-images", type=int, default=0, help="also time evaluation on this many test rows"
    )
    parser.add_argument("--eval-samples", type=int, default=5000, help="K of log_marginal")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.full((args.rows, D), 0.13)).to(device)
    analytic = args.objective == "meanfield"
    loops = {
        "pyrovae": PyrovaeLoop(x, args.batch_size, analytic, capture=not args.eager),
        "torch": TorchLoop(x, args.batch_size, analytic),
    }
    if not args.skip_pyro:
        loops["pyro"] = PyroLoop(x, args.batch_size, analytic)
    loops["torch-fused"] = TorchLoop(x, args.batch_size, analytic, fused=True)
    print(
        f"# {args.rows} x {D} binary rows, batch {args.batch_size}, {args.objective} "
        f"(KL {'closed form' if analytic else 'sampled'}), device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, pyro {pyro.__version__}"
    )
    steps = -(-args.rows // args.batch_size)
    median = alternate(loops, args.repeats, steps, lambda: synchronize(device))
    if "pyro" in median:
        print(f"pyro SVI.step / torch: {median['pyro'] / median['torch']:.2f}")
    print(f"pyrovae / torch-fused: {median['pyrovae'] / median['torch-fused']:.2f}")
    if args.eval_images:
        time_evaluation(loops["pyrovae"].trainer, args, device, median["pyrovae"])
    print(f"ratio {median['pyrovae'] / median['torch']:.2f}")


def time_evaluation(trainer: Trainer, args: argparse.Namespace, device, epoch: float) -> None:
    """Seconds of the per-epoch test ELBO and of log_marginal at K, beside one epoch."""
    x = torch.bernoulli(torch.full((args.eval_images, D), 0.13)).to(device)
    synchronize(device)
    start = time.perf_counter()
    evaluate_elbo(trainer.model, trainer.guide, x, device=device)
    synchronize(device)
    elbo_seconds = time.perf_counter() - start
    start = time.perf_counter()
    log_marginal(
        trainer.model, trainer.guide, x, num_samples=args.eval_samples, progress=False,
        device=device,
    )  # fmt: skip
    synchronize(device)
    is_seconds = time.perf_counter() - start
    print(
        f"test ELBO on {args.eval_images} rows: {elbo_seconds:.3f} s "
        f"({elbo_seconds / epoch:.3f} epochs)"
    )
    print(
        f"log_marginal K={args.eval_samples} on {args.eval_images} rows: {is_seconds:.1f} s "
        f"({is_seconds / epoch:.1f} epochs)"
    )


if __name__ == "__main__":
    main()
