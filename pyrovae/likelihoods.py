"""Observation models p(x | decoder output) for D-dimensional rows x.

Each likelihood turns the decoder's (B, D) output into a distribution with event
shape (D,):

- ``"bernoulli"``: x_d ~ Bernoulli(sigmoid(f_d)), for binary data.
- ``"continuous-bernoulli"``: x_d ~ CB(sigmoid(f_d)), a normalised density on [0, 1]
  (Loaiza-Ganem & Cunningham, "The continuous Bernoulli", NeurIPS 2019); the right
  choice for grey values, where a Bernoulli likelihood is not a density.
- ``"gaussian"``: x_d ~ N(f_d, sigma_d^2) with a learned per-dimension sigma_d >= min_scale.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from .errors import option

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")


class Likelihood(nn.Module):
    """p(x | f) for decoder output f of shape (B, D); ``forward(f)`` returns the distribution."""

    def __init__(self, name: str, dim: int, min_scale: float = 1e-2) -> None:
        super().__init__()
        if name not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
        self.name = name
        self.min_scale = min_scale
        if name == "gaussian":
            # softplus(0.5413) = 1: start at unit noise.
            self.raw_scale = nn.Parameter(torch.full((dim,), 0.5413))

    def forward(self, f: torch.Tensor) -> dist.Distribution:
        if self.name == "bernoulli":
            base = dist.Bernoulli(logits=f)
        elif self.name == "continuous-bernoulli":
            base = dist.ContinuousBernoulli(logits=f)
        else:
            scale = softplus(self.raw_scale) + self.min_scale
            base = dist.Normal(f, scale.expand(f.shape))
        return base.to_event(1)

    def extra_repr(self) -> str:
        return repr(self.name)


def check_support(name: str, x: torch.Tensor) -> None:
    """Raise ValueError, naming the fix, if rows ``x`` (N, D) are outside the support."""
    if name == "bernoulli":
        grey = ((x != 0) & (x != 1)).sum().item()
        if grey:
            binarize = option("binarize", "dynamic", python="pyrovae.data.binarize")
            continuous = option("likelihood", "continuous-bernoulli")
            raise ValueError(
                f"the Bernoulli likelihood needs binary data, but {grey} values are neither 0 nor "
                "1 (grey pixels under a Bernoulli give likelihoods that are not densities). "
                f"Binarize the data ({binarize}), or use {continuous} for values in [0, 1]."
            )
    elif name == "continuous-bernoulli":
        if x.min().item() < 0 or x.max().item() > 1:
            raise ValueError(
                "the continuous Bernoulli likelihood needs values in [0, 1], but the data range "
                f"is [{x.min().item():.3g}, {x.max().item():.3g}]. Rescale the data, or use "
                f"{option('likelihood', 'gaussian')}."
            )
