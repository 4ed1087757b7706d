"""The guide of the semi-supervised VAE: a classifier q(y | x) and an encoder q(z | x, y).

    q(y, z | x) = Cat(y; softmax(g_phi(x))) N(z; mu_phi(x, y), diag sigma_phi(x, y)^2)

(Kingma et al. 2014, eq. (4)). When the labels y are given the guide samples only z,
given the observed class; otherwise it marks y for parallel enumeration, so that
:class:`~pyro.infer.TraceEnum_ELBO` sums the C classes exactly, weighted by q(y | x),
instead of sampling them (sampling y gives high-variance score-function gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..module import LocalPyroModule
from ..nn import MLP, gaussian_head, mlp_with_class


class SSVAEGuide(LocalPyroModule):
    """q(y | x) q(z | x, y) for rows x (N, D), classes y (N,), styles z (N, L).

    Args:
        input_dim: D.
        num_classes: C.
        latent_dim: L.
        hidden_dims: hidden widths of both the classifier and the encoder (MLPs).
        min_scale: floor on sigma, for stability.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int = 10,
        latent_dim: int = 50,
        hidden_dims: Sequence[int] = (500,),
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.min_scale = min_scale
        self.classifier = MLP(input_dim, hidden_dims, num_classes)
        self.encoder = MLP(input_dim + num_classes, hidden_dims, 2 * latent_dim)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log q(y | x): (N, C)."""
        return self.classifier(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x) for rows x (N, D): (N, C), rows summing to one."""
        return self.class_logits(x).softmax(-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x): (N,) int64. The same as
        ``pyrovae.infer.discrete.assign(model, guide, x)["y"]`` (``temperature=1`` there
        draws y from q(y | x) instead)."""
        return self.class_logits(x).argmax(-1)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x, y), each (..., N, L)."""
        hidden = mlp_with_class(self.encoder, x, y)
        return gaussian_head(hidden, self.latent_dim, self.min_scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw y ~ q(y | x) at site "y" (marked for parallel enumeration) unless the
        labels y (N,) are given, then z ~ q(z | x, y) at site "z", returned: (N, L), or
        (C, N, L) under enumeration."""
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample(
                    "y",
                    dist.Categorical(logits=self.class_logits(x)),
                    infer={"enumerate": "parallel"},
                )
            loc, scale = self.encode(x, y)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
