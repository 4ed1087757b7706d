"""The bottom-up guide of the two-layer VAE: q(z1, z2 | x) = q(z1 | x) q(z2 | z1).

Each factor is a reparameterised diagonal Gaussian: z1 ~ N(mu(x), diag sigma(x)^2) from an
encoder of x (the VAE's, MLP or convolutional), then z2 ~ N(nu(z1), diag tau(z1)^2) from an
MLP of that draw. The inference network follows the generative one in reverse, as in Burda et
al. 2016 and the bottom-up baseline of Sønderby et al. 2016. For
:class:`pyrovae.models.hvae.HierarchicalVAE`.

Shapes: x (N, D); z1 (N, L); z2 (N, K).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..module import LocalPyroModule
from ..nn import MLP, gaussian_head, make_encoder


class HierarchicalVAEGuide(LocalPyroModule):
    """q(z1 | x) q(z2 | z1), each N(mean, diag std^2), for rows x (N, D).

    Args:
        input_dim: D.
        latent_dim: L, the dimension of z1.
        top_dim: K, the dimension of z2.
        hidden_dims: widths of the hidden layers of both networks; ``()`` makes them linear.
        architecture: ``"mlp"`` or ``"conv"`` for the encoder of x (needs ``image_shape``);
            the network of q(z2 | z1) is an MLP either way.
        image_shape: (C, H, W) of the images, for a convolutional encoder.
        min_scale: a floor on the standard deviations.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 10,
        top_dim: int = 5,
        hidden_dims: Sequence[int] = (400,),
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.latent_dim, self.top_dim, self.min_scale = latent_dim, top_dim, min_scale
        self.bottom = make_encoder(
            input_dim, 2 * latent_dim, hidden_dims, architecture, image_shape
        )
        self.top = MLP(latent_dim, hidden_dims, 2 * top_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z1 | x), each (N, L)."""
        return gaussian_head(self.bottom(x), self.latent_dim, self.min_scale)

    def encode_top(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z2 | z1) for z1 (..., N, L), each (..., N, K)."""
        return gaussian_head(self.top(z1), self.top_dim, self.min_scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z1 ~ q(z1 | x) at site "z1", then z2 ~ q(z2 | z1) at site "z2", for rows x
        (N, D); y is accepted and ignored. Returns z1 (N, L)."""
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(*self.encode(x)).to_event(1))
            pyro.sample("z2", dist.Normal(*self.encode_top(z1)).to_event(1))
        return z1
