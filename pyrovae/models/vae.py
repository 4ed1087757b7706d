"""The deep latent Gaussian model (variational autoencoder) as a Pyro program.

Generative process, for each row n of the data plate::

    z_n ~ N(0, I_L)                      prior over the latent code (site "z")
    x_n ~ p(x | f_theta(z_n))            decoder network and likelihood (site "x")

Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014; Rezende et al.,
"Stochastic Backpropagation and Approximate Inference in Deep Generative Models",
ICML 2014. With ``beta != 1`` the latent site carries ``latent_scales = {"z": beta}``,
which :func:`pyrovae.fit` applies with Pyro's scale handler to the site in both
model and guide: the objective E_q[log p(x|z)] - beta KL(q(z|x) || p(z)) of
Higgins et al., "beta-VAE", ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..likelihoods import Likelihood
from ..module import LocalPyroModule
from ..nn import make_decoder


class VAE(LocalPyroModule):
    """p(x, z) = N(z; 0, I) p(x | decoder(z)) over rows x of shape (N, D).

    Args:
        input_dim: D, the length of a flattened example.
        latent_dim: L, the dimension of z.
        hidden_dims: widths of the decoder's hidden layers.
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        architecture: ``"mlp"`` or ``"conv"`` (needs ``image_shape``).
        image_shape: (C, H, W) with C*H*W == D, for convolutional decoders and figures.
        beta: weight of the KL term (beta-VAE); 1 is the ELBO.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.beta = float(beta)
        self.decoder = make_decoder(latent_dim, input_dim, hidden_dims, architecture, image_shape)
        self.likelihood = Likelihood(likelihood, input_dim)

    @property
    def latent_scales(self) -> dict[str, float]:
        """Per-site weights of the KL term that :func:`pyrovae.fit` applies (beta-VAE)."""
        return {} if self.beta == 1.0 else {"z": self.beta}

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z (N, L) and observe x (N, D) at site "x"; ``y`` is accepted and ignored."""
        n = x.shape[0]
        with pyro.plate("data", n):
            prior = dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)
        return z

    def decode(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z) for codes z of shape (B, L): a distribution with event shape (D,)."""
        return self.likelihood(self.decoder(z))
