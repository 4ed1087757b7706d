"""Amortized inference networks q(z | x) for models with one latent vector site "z".

- :class:`GaussianEncoder`: q(z | x) = N(mu_phi(x), diag sigma_phi(x)^2), the VAE's
  reparameterised Gaussian guide (Kingma & Welling 2014).
- :class:`DeltaEncoder`: q(z | x) = delta(z - f_phi(x)), a point mass. With it the
  "ELBO" is log p(x, f(x)) (a deterministic autoencoder whose code is regularised by
  the prior), the baseline a VAE is compared with; it is not a bound on log p(x).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..module import LocalPyroModule
from ..nn import gaussian_head, make_encoder


class _Encoder(LocalPyroModule):
    """Shared set-up: a network x (N, D) -> (N, outputs_per_latent * L) for latent ``site``."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int],
        architecture: str,
        image_shape: tuple[int, int, int] | None,
        site: str,
        outputs_per_latent: int,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.site = site
        out_dim = outputs_per_latent * latent_dim
        self.net = make_encoder(input_dim, out_dim, hidden_dims, architecture, image_shape)


class GaussianEncoder(_Encoder):
    """q(z | x) = N(z; mu(x), diag sigma(x)^2) for rows x (N, D), codes z (N, L).

    ``site`` names the latent it samples (default ``"z"``), so the encoder serves any
    model with one latent vector in the ``"data"`` plate.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (400,),
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        site: str = "z",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(input_dim, latent_dim, hidden_dims, architecture, image_shape, site, 2)
        self.min_scale = min_scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation, each (N, L)."""
        return gaussian_head(self.net(x), self.latent_dim, self.min_scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z ~ q(z | x) = N(mu(x), diag sigma(x)^2) at the latent site, for rows x
        (N, D); y is accepted and ignored (a labelled batch). Returns z (N, L)."""
        loc, scale = self.encode(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample(self.site, dist.Normal(loc, scale).to_event(1))


class DeltaEncoder(_Encoder):
    """q(z | x) = delta(z - f(x)): the deterministic autoencoder's encoder; z is (N, L)."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (400,),
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        site: str = "z",
    ) -> None:
        super().__init__(input_dim, latent_dim, hidden_dims, architecture, image_shape, site, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The code f(x) (N, L) and a zero spread, matching :meth:`GaussianEncoder.encode`."""
        code = self.net(x)
        return code, torch.zeros_like(code)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The point mass z = f(x) at the latent site (a Delta: no entropy term), for rows
        x (N, D); y is accepted and ignored. Returns z (N, L)."""
        with pyro.plate("data", x.shape[0]):
            return pyro.sample(self.site, dist.Delta(self.net(x)).to_event(1))
