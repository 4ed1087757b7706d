r"""Your own model with discrete latents: a hidden Markov model, summed exactly.

Run: ``python examples/hmm.py --out runs/hmm`` (about 30 s on 2 CPU cores).

The model, written as a Pyro program with the hidden states enumerated under
``pyro.markov`` inside the data plate (one sequence per example):

    s_1 ~ Categorical(pi),   s_t | s_{t-1} ~ Categorical(A[s_{t-1}]),
    x_t | s_t ~ Normal(mu[s_t], sigma[s_t]),      t = 1..T,

with pi, A, mu and sigma learned. The guide is empty: every latent is discrete and
enumerated, so ``pyrovae.fit`` reads the objective from the program and trains with
Pyro's ``TraceEnum_ELBO``, whose loss is then -log p(x) itself (the forward algorithm, done
by Pyro's tensor contraction); ``pyrovae.log_marginal`` gives each sequence's exact
log p(x) with standard error 0, and ``pyrovae.infer.assign`` its Viterbi path (the MAP of
the states, by ``infer_discrete``).

The data are drawn from a known 3-state HMM (no download), so the script checks what it
learned: the log-likelihood per sequence beside a hand-written forward algorithm with the
fitted parameters and with the true ones, and the share of time steps whose decoded state
is the true one. It writes ``elbo.png`` (the training curve) and ``viterbi.png`` (a test
sequence with its true and decoded states) into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.nn import PyroParam  # noqa: E402
from pyro.ops.indexing import Vindex  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.infer import assign  # noqa: E402
from pyrovae.module import LocalPyroModule  # noqa: E402

TRUE_LOCS = torch.tensor([-2.0, 0.0, 2.5])
TRUE_SCALES = torch.tensor([0.6, 0.5, 0.8])
TRUE_TRANSITIONS = torch.tensor([[0.90, 0.08, 0.02], [0.05, 0.90, 0.05], [0.03, 0.07, 0.90]])
TRUE_INIT = torch.tensor([0.5, 0.3, 0.2])


class HMM(LocalPyroModule):
    """p(s_1..T, x_1..T) of a Gaussian HMM with S states; x is (N, T), one row a sequence."""

    def __init__(self, states: int = 3) -> None:
        super().__init__()
        self.init_logits = PyroParam(torch.zeros(states))
        self.transition_logits = PyroParam(2.0 * torch.eye(states))
        self.locs = PyroParam(torch.linspace(-1.0, 1.0, states))
        self.scales = PyroParam(torch.ones(states), constraint=dist.constraints.positive)

    def forward(self, x: torch.Tensor) -> None:
        transitions = self.transition_logits.softmax(-1)
        with pyro.plate("data", x.shape[0]):
            s = pyro.sample(
                "s_0", dist.Categorical(logits=self.init_logits), infer={"enumerate": "parallel"}
            )
            pyro.sample("x_0", dist.Normal(self.locs[s], self.scales[s]), obs=x[:, 0])
            for t in pyro.markov(range(1, x.shape[1])):
                s = pyro.sample(
                    f"s_{t}",
                    dist.Categorical(Vindex(transitions)[s]),
                    infer={"enumerate": "parallel"},
                )
                pyro.sample(f"x_{t}", dist.Normal(self.locs[s], self.scales[s]), obs=x[:, t])


def empty_guide(x: torch.Tensor) -> None:
    """Every latent is enumerated in the model: nothing for a guide to sample."""


def simulate(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """n sequences (n, length) from the true HMM, and their states (n, length)."""
    states = torch.empty(n, length, dtype=torch.long)
    states[:, 0] = torch.multinomial(TRUE_INIT, n, replacement=True, generator=generator)
    for t in range(1, length):
        probs = TRUE_TRANSITIONS[states[:, t - 1]]
        states[:, t] = torch.multinomial(probs, 1, generator=generator)[:, 0]
    noise = torch.randn(n, length, generator=generator)
    return TRUE_LOCS[states] + TRUE_SCALES[states] * noise, states


def forward_algorithm(x, init, transitions, locs, scales) -> torch.Tensor:
    """log p(x) per sequence (N,), by the forward recursion written out by hand."""
    emission = dist.Normal(locs, scales).log_prob(x[..., None])  # (N, T, S)
    alpha = init.log() + emission[:, 0]
    for t in range(1, x.shape[1]):
        alpha = torch.logsumexp(alpha[:, :, None] + transitions.log(), 1) + emission[:, t]
    return torch.logsumexp(alpha, -1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/hmm", help="folder for the figures")
    parser.add_argument("--sequences", type=int, default=300, help="training sequences")
    parser.add_argument("--length", type=int, default=20, help="time steps per sequence")
    parser.add_argument("--epochs", type=int, default=40, help="passes over the sequences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    generator = torch.Generator().manual_seed(args.seed)
    train_x, _ = simulate(args.sequences, args.length, generator)
    test_x, test_states = simulate(200, args.length, generator)

    model = HMM()
    trainer = pyrovae.infer.Trainer(
        model,
        empty_guide,
        train_x,
        test_data=test_x,
        batch_size=100,
        lr=0.05,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(
        f"objective read from the program: {trainer.objective} (enumerated sites: "
        f"{len(trainer.program.enumerated)}, s_0..s_{args.length - 1})"
    )
    history = trainer.run(args.epochs)

    result = pyrovae.log_marginal(model, empty_guide, test_x, num_samples=2, progress=False)
    with torch.no_grad():
        fitted = forward_algorithm(
            test_x,
            model.init_logits.softmax(-1),
            model.transition_logits.softmax(-1),
            model.locs,
            model.scales,
        )
        true = forward_algorithm(test_x, TRUE_INIT, TRUE_TRANSITIONS, TRUE_LOCS, TRUE_SCALES)
    print(
        f"test log p(x), log_marginal: {result.mean():.4f} nats per sequence "
        f"(standard error {result.mean_stderr():.1e})"
    )
    print(f"test log p(x), forward algorithm by hand: {fitted.mean():.4f}")
    print(f"largest per-sequence difference: {(result.log_likelihood - fitted).abs().max():.1e}")
    print(f"test log p(x) under the true parameters: {true.mean():.4f}")
    print(f"test ELBO of the last epoch: {history[-1]['test_elbo']:.4f} (equal: nothing sampled)")

    path = assign(model, empty_guide, test_x)  # Viterbi: the MAP of s_0..s_{T-1}
    decoded = torch.stack([path[f"s_{t}"] for t in range(args.length)], -1)
    # Learned states are numbered freely: match them to the true ones by their means.
    order = torch.argsort(torch.argsort(model.locs.detach()))  # rank of each learned state
    accuracy = (order[decoded] == test_states).float().mean()
    print(f"Viterbi path: {100 * accuracy:.1f}% of test time steps in the true state")

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(history) + 1), history.column("test_elbo"))
    ax.set(xlabel="epoch", ylabel="test log p(x) per sequence (nats)", title="HMM training")
    fig.tight_layout()
    fig.savefig(out / "elbo.png", dpi=120)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(test_x[0], color="0.6", lw=1, label="x")
    ax.step(range(args.length), TRUE_LOCS[test_states[0]], where="mid", label="true state mean")
    ax.step(range(args.length), TRUE_LOCS[order[decoded[0]]], where="mid", ls="--", label="Viterbi")
    ax.set(xlabel="t", title="a test sequence and its decoded states")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "viterbi.png", dpi=120)
    print(f"figures: elbo.png, viterbi.png in {out}")


if __name__ == "__main__":
    main()
