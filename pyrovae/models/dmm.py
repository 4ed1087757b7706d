"""The deep Markov model: a latent state per step, a nonlinear Gaussian transition.

Generative process, for each sequence n of the data plate (T_n = ``lengths[n]`` real steps
of x_n (T, D), the rest padding)::

    z_0 = a learned vector
    z_t ~ N(mu(z_{t-1}), diag s(z_{t-1})^2)     site "z_t", t = 1..T, under pyro.markov
    x_t ~ p(x | e(z_t))                         all steps in one site "x", event (T, D)

with the gated transition of Krishnan, Shalit & Sontag, "Structured Inference Networks for
Nonlinear State Space Models", AAAI 2017 (section 5): g = sigmoid(MLP_g(z_{t-1})),
m = MLP_m(z_{t-1}), mu = (1 - g) * (W z_{t-1} + b) + g * m (W starts as the identity),
s = softplus(W_s relu(m) + b_s); and an MLP emission e. Steps past T_n are masked out of
both kinds of site (their terms are zero), so a padded batch has the numbers of its unpadded
sequences, and ``pyro.markov`` tells Pyro that z_t depends on the past only through z_{t-1}.
The states are drawn one step after another, but given them the x_t are independent: the
emission runs once on all T states and scores every step in the one site "x" (its log
density is sum_t log p(x_t | z_t) over the real steps), which costs a few large matrix
products instead of T small ones.

:class:`pyrovae.guides.MarkovEncoder` is the structured guide q(z_t | z_{t-1}, x_{t:T}) of
the same paper (its "DKS" variant). Compared with :class:`~pyrovae.models.SequenceVAE`'s one
code per sequence, the DMM's code is a path z_{1:T}.

Shapes: x (N, T, D), lengths (N,) or None; each z_t (..., N, L).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..likelihoods import Likelihood
from ..module import LocalPyroModule
from ..nn import MLP
from .sequence_vae import step_mask


class GatedTransition(nn.Module):
    """(z_{t-1}) (..., L) -> (mu, s) of p(z_t | z_{t-1}), each (..., L); see the module."""

    def __init__(self, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gate = MLP(latent_dim, (hidden_dim,), latent_dim)
        self.proposal = MLP(latent_dim, (hidden_dim,), latent_dim)
        self.linear = nn.Linear(latent_dim, latent_dim)
        self.scale = nn.Linear(latent_dim, latent_dim)
        with torch.no_grad():  # z_t starts near z_{t-1}
            self.linear.weight.copy_(torch.eye(latent_dim))
            self.linear.bias.zero_()

    def forward(self, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(self.gate(previous))
        proposed = self.proposal(previous)
        loc = (1 - gate) * self.linear(previous) + gate * proposed
        return loc, softplus(self.scale(torch.relu(proposed))) + 1e-4


class DeepMarkovModel(LocalPyroModule):
    """p(x, z) = prod_{t <= T_n} N(z_t; mu(z_{t-1}), s(z_{t-1})^2) p(x_t | e(z_t)).

    Args:
        input_dim: D, the values per step.
        latent_dim: L, the dimension of each z_t.
        transition_dim: the hidden width of the gated transition's MLPs.
        emission_dims: hidden widths of the emission MLP (``()``: linear).
        likelihood: ``"bernoulli"`` (binary piano rolls), ``"continuous-bernoulli"`` or
            ``"gaussian"``, per value of a step.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 32,
        transition_dim: int = 128,
        emission_dims: Sequence[int] = (64, 64),
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.transition = GatedTransition(latent_dim, transition_dim)
        self.emitter = MLP(latent_dim, tuple(emission_dims), input_dim)
        self.likelihood = Likelihood(likelihood, input_dim)
        self.z_0 = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Sample z_1..z_T, then observe x_1..x_T in one site (masked past each length)."""
        mask = step_mask(x, lengths)
        n, steps = x.shape[:2]
        previous = self.z_0.expand(n, self.latent_dim)
        states = []
        with pyro.plate("data", n):
            for t in pyro.markov(range(steps)):
                real = True if mask is None else mask[:, t]
                loc, scale = self.transition(previous)
                previous = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1).mask(real))
                states.append(previous)
            emission = self.decode(torch.stack(states, -2))  # batch (..., N, T), event (D,)
            if mask is not None:
                emission = emission.mask(mask)
            pyro.sample("x", emission.to_event(1), obs=x)

    def decode(self, z: torch.Tensor) -> dist.Distribution:
        """p(x_t | z_t) for states z (..., L): event shape (D,)."""
        return self.likelihood(self.emitter(z))

    @torch.no_grad()
    def generate(self, n: int, steps: int, sample: bool = True) -> torch.Tensor:
        """Sequences (n, steps, D) from the prior: z_t ~ p(z_t | z_{t-1}), x_t drawn from
        p(x_t | z_t) (``sample``) or its mean."""
        previous = self.z_0.expand(n, self.latent_dim)
        out = []
        for _ in range(steps):
            loc, scale = self.transition(previous)
            previous = dist.Normal(loc, scale).sample()
            step = self.decode(previous).base_dist
            out.append(step.sample() if sample else step.mean)
        return torch.stack(out, 1)
