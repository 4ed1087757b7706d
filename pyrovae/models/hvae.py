"""A variational autoencoder with two stochastic layers, as a Pyro program.

Generative process, top down, for each row n of the data plate::

    z2_n ~ N(0, I_K)                                the top code (site "z2")
    z1_n ~ N(mu(z2_n), diag sigma(z2_n)^2)          the bottom code (site "z1")
    x_n  ~ p(x | f(z1_n))                           the VAE's decoder and likelihood (site "x")

The marginal prior p(z1) = E_p(z2)[p(z1 | z2)] is a continuous mixture of Gaussians, richer
than the VAE's N(0, I). Its guide (:class:`pyrovae.guides.hierarchical.HierarchicalVAEGuide`)
infers bottom up, q(z1 | x) q(z2 | z1), and the ELBO is
E_q[log p(x | z1) + log p(z1 | z2) + log p(z2) - log q(z1 | x) - log q(z2 | z1)] <= log p(x).

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (the
two-stochastic-layer architecture, their section 5); Sønderby et al., "Ladder Variational
Autoencoders", NeurIPS 2016 (the bottom-up inference model that their ladder replaces). The
decoder p(x | z1), its likelihoods and ``beta`` are :class:`~pyrovae.models.VAE`'s own.

Shapes: x (N, D); z1 (..., N, L); z2 (..., N, K).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..nn import MLP, gaussian_head
from .vae import VAE


class HierarchicalVAE(VAE):
    """p(x, z1, z2) = N(z2; 0, I) N(z1; mu(z2), diag sigma(z2)^2) p(x | decoder(z1)).

    The :class:`~pyrovae.models.VAE` (its decoder from z1, likelihood, architecture and beta)
    with a second latent layer above its code: the prior of z1 is a network of z2.

    Args:
        input_dim: D, the length of a flattened example.
        latent_dim: L, the dimension of z1 (the code x is decoded from).
        top_dim: K, the dimension of z2.
        hidden_dims: widths of the hidden layers of the decoder p(x | z1) and of the
            network of p(z1 | z2); ``()`` makes both linear.
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        architecture: ``"mlp"`` or ``"conv"`` for the decoder (needs ``image_shape``); the
            network of p(z1 | z2) is an MLP either way.
        image_shape: (C, H, W) with C*H*W == D, for convolutional decoders and figures.
        beta: weight of both layers' KL terms (beta-VAE); 1 is the ELBO.
        min_scale: a floor on sigma(z2).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 10,
        top_dim: int = 5,
        hidden_dims: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        beta: float = 1.0,
        min_scale: float = 1e-4,
    ) -> None:
        for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if top_dim < 1:
            raise ValueError(f"top_dim must be at least 1, got {top_dim}")
        super().__init__(
            input_dim, latent_dim, hidden_dims, likelihood, architecture, image_shape, beta
        )
        self.top_dim, self.min_scale = top_dim, min_scale
        self.prior_net = MLP(top_dim, hidden_dims, 2 * latent_dim)

    @property
    def latent_scales(self) -> dict[str, float]:
        """Per-site weights of the KL terms that :func:`pyrovae.fit` applies: beta on both
        layers (beta-VAE), none at beta = 1."""
        return {} if self.beta == 1.0 else {"z1": self.beta, "z2": self.beta}

    def conditional_prior(self, z2: torch.Tensor) -> dist.Distribution:
        """p(z1 | z2) = N(mu(z2), diag sigma(z2)^2) for z2 (..., K): event shape (L,)."""
        loc, scale = gaussian_head(self.prior_net(z2), self.latent_dim, self.min_scale)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z2 (N, K) at site "z2", z1 (N, L) at site "z1" and observe x (N, D) at
        site "x"; ``y`` is accepted and ignored. Returns z1."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"HierarchicalVAE takes rows x of shape (N, {self.input_dim}), got "
                f"{tuple(x.shape)}; flatten each example to {self.input_dim} values"
            )
        n = x.shape[0]
        with pyro.plate("data", n):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(n, self.top_dim), 1.0).to_event(1))
            z1 = pyro.sample("z1", self.conditional_prior(z2))
            pyro.sample("x", self.decode(z1), obs=x)
        return z1
