"""Benchmark: an SSVAE (M2) epoch through pyrovae.fit against a hand-written PyTorch M2 loop.

The M2 model of Kingma et al. 2014 (784-500-10 classifier q(y | x), 794-500-100 encoder
q(z | x, y), 60-500-784 decoder p(x | z, y), Bernoulli likelihood, z of 50 dimensions) trains
on ``--rows`` MNIST training images (binarized once, fixed), ``--labels`` of them labelled
(class-balanced), one epoch at a time, in two ways alternating in one run:

- ``pyrovae``: ``pyrovae.infer.Trainer`` (what ``pyrovae.fit`` runs) on
  ``pyrovae.models.SSVAE`` and ``pyrovae.guides.SSVAEGuide`` with
  ``SemiSupervisedELBO(alpha)``: TraceEnum_ELBO sums the 10 classes of each unlabelled row
  exactly, captured (``--eager``: Pyro every step);
- ``torch`` (the named baseline): the same objective written out by hand with the same
  networks: for an unlabelled batch, every row paired with each of the 10 classes (one
  batched pass of (10 B) rows), U(x) = sum_y q(y | x) [log p(x | z_y, y) + log p(y)
  + log p(z_y) - log q(z_y | x, y)] - sum_y q(y | x) log q(y | x); for a labelled batch
  L(x, y) and alpha times -log q(y | x). Adam (torch's default, per tensor) at lr 1e-3, the
  loss divided by the batch size, as ``Trainer`` does.

Both use the same batches: an epoch is one pass over the unlabelled rows in a fresh random
order, each unlabelled batch followed by a labelled batch drawn from the labelled rows
(``pyrovae.data.semisupervised.InterleavedBatches``, the batcher ``Trainer`` uses). Each method
runs one untimed epoch (set-up and capture), then ``--repeats`` timed epochs, interleaved;
the script prints every epoch's seconds, the medians and last ``ratio X.XX``: the median
pyrovae epoch over the median hand-written epoch.

    python benchmarks/ssvae_step.py                       # 10,000 rows, 100 labels, batch 200
    python benchmarks/ssvae_step.py --eager               # pyrovae without capture
    python benchmarks/ssvae_step.py --long 50             # epoch 1 against epoch 50 (pyrovae)

``--long N`` instead trains pyrovae alone for N epochs and prints the seconds of epoch 1
and of epoch N and last ``ratio X.XX`` (epoch N / epoch 1): whether long runs stay fast
(denormal floats once made late epochs 4x slower).
"""

from __future__ import annotations

import argparse
import math

import pyro
import torch
import torch.nn.functional as F
from alternating import alternate, timed
from torch.distributions import Normal

from pyrovae.data import binarize_fixed, load_dataset, split_labeled
from pyrovae.data.semisupervised import InterleavedBatches
from pyrovae.guides import SSVAEGuide
from pyrovae.infer import SemiSupervisedELBO, Trainer
from pyrovae.models import SSVAE

C, HIDDEN, LATENT = 10, 500, 50


class TorchM2:
    """The baseline: M2's objective (Kingma et al. 2014, eq. (9)) written out by hand."""

    def __init__(self, batches: InterleavedBatches, alpha: float) -> None:
        self.batches, self.alpha = batches, alpha
        d = batches.data.labeled_x.shape[1]
        guide = SSVAEGuide(d, C, LATENT, (HIDDEN,))
        self.classifier, self.encoder = guide.classifier, guide.encoder
        self.decoder = SSVAE(d, C, LATENT, (HIDDEN,)).decoder
        params = [
            *self.classifier.parameters(),
            *self.encoder.parameters(),
            *self.decoder.parameters(),
        ]
        self.optimizer = torch.optim.Adam(params, lr=1e-3)
        self.log_prior_y = -math.log(C)

    def elbo_given_class(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """log p(x | z, y) + log p(y) + log p(z) - log q(z | x, y) at one draw z: (..., B)."""
        loc, raw_scale = self.encoder(torch.cat([x, code], -1)).split(LATENT, dim=-1)
        scale = F.softplus(raw_scale) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(torch.cat([z, code], -1))
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = Normal(loc, scale).log_prob(z).sum(-1)
        return log_px + self.log_prior_y + log_pz - log_qz

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's summed -objective."""
        logits = self.classifier(x)
        if y is not None:
            code = F.one_hot(y, C).to(x.dtype)
            cross_entropy = F.cross_entropy(logits, y, reduction="sum")
            return -self.elbo_given_class(x, code).sum() + self.alpha * cross_entropy
        # Every row with each class: (C, B, D) and (C, B, C), one batched pass.
        codes = torch.eye(C, dtype=x.dtype).unsqueeze(1).expand(C, x.shape[0], C)
        elbos = self.elbo_given_class(x.expand(C, *x.shape), codes)  # (C, B)
        log_q = logits.log_softmax(-1)
        q = log_q.exp()
        return -((q * elbos.T).sum() - (q * log_q).sum())

    def epoch(self) -> None:
        for batch in self.batches:
            loss = self.loss(*batch)
            (loss / batch[0].shape[0]).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class PyrovaeM2:
    """pyrovae's Trainer on the SSVAE pair: the loop ``pyrovae.fit`` runs, one epoch a call."""

    def __init__(self, data, batch_size: int, alpha: float, capture: bool) -> None:
        d = data.labeled_x.shape[1]
        self.trainer = Trainer(
            SSVAE(d, C, LATENT, (HIDDEN,)),
            SSVAEGuide(d, C, LATENT, (HIDDEN,)),
            data,
            batch_size=batch_size,
            objective=SemiSupervisedELBO(alpha=alpha),
            progress=False,
            capture=capture,
            seed=0,
        )

    def epoch(self) -> None:
        self.trainer.run(self.trainer.epoch + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", help="mnist (or digits, for a quick try)")
    parser.add_argument("--rows", type=int, default=10000, help="training rows")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per method")
    parser.add_argument("--data-dir", default=None, help="where MNIST is ($PYROVAE_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--eager", action="store_true", help="pyrovae without capture")
    parser.add_argument("--long", type=int, default=0, help="pyrovae alone: epoch 1 vs this")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    images = load_dataset(args.dataset, args.data_dir)
    x = binarize_fixed(images.train_x[: args.rows])
    data = split_labeled(x, images.train_y[: args.rows], args.labels, seed=0)
    print(
        f"# SSVAE (M2) on {len(x)} {args.dataset} rows, {args.labels} labelled, batch "
        f"{args.batch_size}, alpha {args.alpha}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, pyro {pyro.__version__}"
    )
    if args.long:
        long_run(PyrovaeM2(data, args.batch_size, args.alpha, not args.eager), args.long)
        return
    batches = InterleavedBatches(data, args.batch_size, generator=torch.Generator().manual_seed(0))
    loops = {
        "pyrovae": PyrovaeM2(data, args.batch_size, args.alpha, capture=not args.eager),
        "torch": TorchM2(batches, args.alpha),
    }
    steps = len(batches)
    median = alternate(loops, args.repeats, steps)
    trainer = loops["pyrovae"].trainer
    captured = sum(graph is not None for graph in trainer.loss.graphs.values())
    print(f"pyrovae: {captured} of {len(trainer.loss.graphs)} batch shapes captured")
    print(f"ratio {median['pyrovae'] / median['torch']:.2f}")


def long_run(loop: PyrovaeM2, epochs: int) -> None:
    """Seconds of every epoch of one run; the ratio of the last epoch to the first."""
    seconds = []
    for epoch in range(epochs):
        seconds.append(timed(loop))
        print(f"epoch {epoch + 1}: {seconds[-1]:.3f} s", flush=True)
    # Epoch 1 includes the capture; compare the last with the second, the first steady one.
    first = seconds[1] if epochs > 1 else seconds[0]
    print(f"epoch 2 {first:.3f} s, epoch {epochs} {seconds[-1]:.3f} s")
    print(f"ratio {seconds[-1] / first:.2f}")


if __name__ == "__main__":
    main()
