"""q(z | x) for one code per sequence: a bidirectional GRU summarises the real steps.

- :class:`SequenceEncoder`: a forward GRU reads x_1..x_{T_n}, a backward GRU reads
  x_{T_n}..x_1 (each sequence reversed within its own length, so padding is never read);
  their last states [h_fwd, h_bwd] (2H) give q(z | x) = N(mu(h), diag sigma(h)^2) through
  a linear layer. A padded batch gives each sequence the posterior of the unpadded one.

- :class:`MarkovEncoder`: the structured guide q(z_t | z_{t-1}, x_{t:T}) of the deep Markov
  model (:class:`~pyrovae.models.DeepMarkovModel`), a GRU (or an Elman RNN) reading each
  sequence backwards.

Shapes: x (N, T, D), lengths (N,) int64 in [1, T] or None (all T); z (N, L).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..models.sequence_vae import step_mask
from ..module import LocalPyroModule
from ..nn import gaussian_head


def full_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``lengths`` on x's device, or every sequence's T steps when None: (N,) int64."""
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    return lengths.to(x.device)


def last_steps(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """states (N, T, H) at step T_n - 1 of each sequence: (N, H)."""
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
    return states.gather(1, index).squeeze(1)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x (N, T, D) reversed over its first T_n steps, padding left in place."""
    t = torch.arange(x.shape[1], device=x.device)
    lengths = lengths.unsqueeze(-1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (N, T)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class SequenceEncoder(LocalPyroModule):
    """q(z | x) = N(z; mu(h), diag sigma(h)^2), h = [forward GRU's, backward GRU's last state].

    Args:
        input_dim: D, the values per step.
        latent_dim: L, the dimension of z.
        hidden_dim: H, each GRU's state.
        min_scale: a floor on sigma.
    """

    def __init__(
        self, input_dim: int, latent_dim: int = 16, hidden_dim: int = 256, min_scale: float = 1e-4
    ) -> None:
        super().__init__()
        self.latent_dim, self.min_scale = latent_dim, min_scale
        self.forward_gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.backward_gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.head = nn.Linear(2 * hidden_dim, 2 * latent_dim)

    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation, each (N, L)."""
        step_mask(x, lengths)  # checks the shapes
        lengths = full_lengths(x, lengths)
        forward_states, _ = self.forward_gru(x)
        backward_states, _ = self.backward_gru(reverse_within(x, lengths))
        summary = torch.cat(
            [last_steps(forward_states, lengths), last_steps(backward_states, lengths)], -1
        )
        return gaussian_head(self.head(summary), self.latent_dim, self.min_scale)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z ~ q(z | x) at site "z" from the summary of each sequence's real steps,
        for sequences x (N, T, D) with lengths (N,). Returns z (N, L)."""
        loc, scale = self.encode(x, lengths)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class MarkovEncoder(LocalPyroModule):
    """q(z_{1:T} | x) = prod_t q(z_t | z_{t-1}, x_{t:T_n}) for the deep Markov model: a
    recurrent network reads each sequence backwards from its last real step, its state h_t
    summarising x_{t:T_n}; the combiner of Krishnan et al. 2017 gives
    q(z_t | z_{t-1}, h_t) = N(W_m c + b_m, diag softplus(W_s c + b_s)^2) with
    c = (tanh(W_z z_{t-1} + b_z) + h_t) / 2, from a learned z_q_0. Steps past T_n are masked.

    Args:
        input_dim: D; latent_dim: L; hidden_dim: the recurrent state (and c's width).
        rnn: ``"gru"`` (a GRU) or ``"rnn"`` (an Elman RNN with ReLU, as in Krishnan et al.'s
            code and Pyro's ``examples/dmm``: a third of a GRU's arithmetic).
    """

    def __init__(
        self, input_dim: int, latent_dim: int = 32, hidden_dim: int = 128, rnn: str = "gru"
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        if rnn == "gru":
            self.rnn: nn.Module = nn.GRU(input_dim, hidden_dim, batch_first=True)
        elif rnn == "rnn":
            self.rnn = nn.RNN(input_dim, hidden_dim, nonlinearity="relu", batch_first=True)
        else:
            raise ValueError(f"rnn must be 'gru' or 'rnn', got {rnn!r}")
        self.from_previous = nn.Linear(latent_dim, hidden_dim)
        self.loc = nn.Linear(hidden_dim, latent_dim)
        self.scale = nn.Linear(hidden_dim, latent_dim)
        self.z_q_0 = nn.Parameter(torch.zeros(latent_dim))  # named apart from the model's z_0

    def summaries(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """h_t (N, T, H): the backward network's state after reading x_{T_n}, ..., x_t."""
        lengths = full_lengths(x, lengths)
        states, _ = self.rnn(reverse_within(x, lengths))
        return reverse_within(states, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Draw z_1, ..., z_T at sites "z_1", ... under ``pyro.markov``, each from
        q(z_t | z_{t-1}, x_{t:T}), masked past each length, for x (N, T, D)."""
        mask = step_mask(x, lengths)
        n, steps = x.shape[:2]
        h = self.summaries(x, lengths).unbind(1)  # one backward for all steps, not T
        previous = self.z_q_0.expand(n, self.latent_dim)
        with pyro.plate("data", n):
            for t in pyro.markov(range(steps)):
                real = True if mask is None else mask[:, t]
                c = 0.5 * (torch.tanh(self.from_previous(previous)) + h[t])
                q = dist.Normal(self.loc(c), softplus(self.scale(c)) + 1e-4)
                previous = pyro.sample(f"z_{t + 1}", q.to_event(1).mask(real))
