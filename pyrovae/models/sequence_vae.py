"""The sequence VAE: one latent code per sequence, a GRU decoder conditioned on it.

Generative process, for each sequence n of the data plate (x_n is (T, D), of which the first
T_n = ``lengths[n]`` steps are real and the rest padding)::

    z_n ~ N(0, I_L)                                   the sequence's code (site "z")
    h_0 = tanh(W_z z_n + b_z)                         the decoder's first state
    h_t = GRU(x_{n,t-1}, h_{t-1}),  x_{n,0} = 0       teacher-forced on the previous step
    x_{n,t} ~ p(x | W_o h_t + b_o),   t = 1..T_n      each step's D values (site "x")

so log p(x_n | z_n) = sum_{t <= T_n} log p(x_{n,t} | x_{n,<t}, z_n): steps past T_n are
masked out of the observation (a padded batch has the log-likelihood of its unpadded
sequences). Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016, with
the piano-roll emission of Boulanger-Lewandowski et al. 2012 (a Bernoulli per key per step).

Against posterior collapse (the decoder ignoring z), each optional: KL warm-up, through
:class:`pyrovae.infer.Trainer`'s ``kl_warmup`` (Pyro's scale on "z" in model and guide), and
``input_dropout`` = p, Bowman et al.'s word dropout: in training mode each previous step fed
to the decoder is replaced by zeros with probability p, so that the decoder must lean on z.
It is a training device, not part of the density: in evaluation mode (which
:func:`pyrovae.infer.log_marginal`, :func:`~pyrovae.infer.evaluate_elbo` and the test ELBO
switch to) every previous step is fed.

Shapes: x (N, T, D) float, lengths (N,) int64 in [1, T] or None (every sequence T steps);
z (..., N, L), where leading dimensions (importance particles) run as extra sequences.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.util import is_validation_enabled
from torch import nn

from ..likelihoods import Likelihood
from ..module import LocalPyroModule


def step_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """(N, T) bool, True on the real steps of each sequence, or None when every step is real.

    Raises:
        ValueError: x is not (N, T, D), or lengths is not (N,) integers in [1, T].
    """
    if x.dim() != 3:
        raise ValueError(
            f"sequences must be a tensor (N, T, D) of N sequences of T steps, got {tuple(x.shape)}"
        )
    if lengths is None:
        return None
    n, t = x.shape[:2]
    if lengths.shape != (n,) or lengths.is_floating_point():
        raise ValueError(
            f"lengths must be N = {n} integers (one per sequence), got {lengths.dtype} "
            f"{tuple(lengths.shape)}"
        )
    # Read back only where Pyro validates (every eager step; a captured replay skips it).
    if is_validation_enabled() and (bool((lengths < 1).any()) or bool((lengths > t).any())):
        raise ValueError(f"every length must be between 1 and the T = {t} steps of x")
    return torch.arange(t, device=x.device) < lengths.to(x.device).unsqueeze(-1)


class SequenceVAE(LocalPyroModule):
    """p(x, z) = N(z; 0, I) prod_{t <= T_n} p(x_t | GRU state h_t(x_{<t}, z)) over sequences
    x (N, T, D) with lengths (N,).

    Args:
        input_dim: D, the values per step (88 piano keys).
        latent_dim: L, the dimension of z.
        hidden_dim: H, the GRU's state.
        likelihood: ``"bernoulli"`` (binary piano rolls), ``"continuous-bernoulli"`` or
            ``"gaussian"``, per value of a step.
        input_dropout: p in [0, 1), Bowman et al.'s word dropout in training mode.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        hidden_dim: int = 256,
        likelihood: str = "bernoulli",
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.input_dim, self.latent_dim, self.hidden_dim = input_dim, latent_dim, hidden_dim
        self.input_dropout = float(input_dropout)
        self.initial = nn.Linear(latent_dim, hidden_dim)
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.emit = nn.Linear(hidden_dim, input_dim)
        self.likelihood = Likelihood(likelihood, input_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z (N, L) and observe the real steps of x (N, T, D) at site "x"."""
        mask = step_mask(x, lengths)
        n = x.shape[0]
        with pyro.plate("data", n):
            prior = dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", self.observation(z, x, mask), obs=x)
        return z

    def previous_steps(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's inputs (N, T, D): x shifted one step later, zeros first; in training
        mode each step zeroed with probability ``input_dropout``."""
        shifted = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        if self.training and self.input_dropout > 0:
            keep = torch.rand(x.shape[:2], device=x.device) >= self.input_dropout
            shifted = shifted * keep.unsqueeze(-1).to(x.dtype)
        return shifted

    def step_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W_o h_t + b_o (..., N, T, D) for codes z (..., N, L) and sequences x (N, T, D):
        the GRU runs once over all leading dimensions of z as extra sequences."""
        batch = z.shape[:-1]
        codes = z.reshape(-1, self.latent_dim)
        inputs = self.previous_steps(x).expand(batch + x.shape[1:]).reshape(-1, *x.shape[1:])
        h0 = torch.tanh(self.initial(codes)).unsqueeze(0)  # (1, B, H)
        states, _ = self.gru(inputs, h0)
        return self.emit(states).reshape(batch + x.shape[1:])

    def observation(
        self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None
    ) -> dist.TorchDistribution:
        """p(x | z) with event shape (T, D), the padded steps masked out."""
        per_value = self.likelihood(self.step_outputs(z, x)).base_dist  # batch (..., N, T, D)
        if mask is not None:
            per_value = per_value.mask(mask.unsqueeze(-1))
        return per_value.to_event(2)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, steps: int, sample: bool = True) -> torch.Tensor:
        """Sequences (B, steps, D) from codes z (B, L), step by step: each step drawn from
        p(x_t | h_t) (``sample``) or its mean, and fed back as the next input."""
        h = torch.tanh(self.initial(z)).unsqueeze(0)
        previous = z.new_zeros(z.shape[0], 1, self.input_dim)
        out = []
        for _ in range(steps):
            state, h = self.gru(previous, h)
            step = self.likelihood(self.emit(state[:, -1])).base_dist
            value = step.sample() if sample else step.mean
            out.append(value)
            previous = value.unsqueeze(1)
        return torch.stack(out, dim=1)
