"""The guide of the auxiliary deep generative model: q(a | x) q(y | a, x) q(z | a, y, x).

A draw of the auxiliary code a ~ q(a | x) feeds the classifier q(y | a, x) and the encoder
q(z | a, y, x) (Maaløe et al. 2016, eq. (11)). When the labels are observed the guide draws a
and z given y; otherwise it marks y for parallel enumeration, so that
:class:`~pyro.infer.TraceEnum_ELBO` sums the C classes exactly, weighted by q(y | a, x).
For :class:`~pyrovae.models.ADGM`.

Shapes: x (N, D), y (N,) int64, a (N, A), z (..., N, L).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..module import LocalPyroModule
from ..nn import MLP, gaussian_head, mlp_on_parts


class ADGMGuide(LocalPyroModule):
    """q(a | x) q(y | a, x) q(z | a, y, x) for rows x (N, D).

    Args:
        input_dim: D.
        num_classes: C.
        latent_dim: L, the dimension of z.
        aux_dim: A, the dimension of a.
        hidden_dims: hidden widths of the three networks (MLPs).
        min_scale: a floor on the standard deviations.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int = 10,
        latent_dim: int = 100,
        aux_dim: int = 100,
        hidden_dims: Sequence[int] = (500, 500),
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.num_classes, self.latent_dim, self.aux_dim = num_classes, latent_dim, aux_dim
        self.min_scale = min_scale
        self.aux_encoder = MLP(input_dim, hidden_dims, 2 * aux_dim)
        self.classifier = MLP(input_dim + aux_dim, hidden_dims, num_classes)
        self.encoder = MLP(input_dim + aux_dim + num_classes, hidden_dims, 2 * latent_dim)

    def auxiliary(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(a | x), each (N, A)."""
        return gaussian_head(self.aux_encoder(x), self.aux_dim, self.min_scale)

    def class_logits(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Unnormalised log q(y | a, x) for x (N, D) and a (..., N, A): (..., N, C)."""
        return mlp_on_parts(self.classifier, (x, a))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | a, x) at the mean of q(a | x), for rows x (N, D): (N, C). Deterministic; the
        classifier E_q(a|x)[q(y | a, x)] differs from it by the spread of a."""
        return self.class_logits(x, self.auxiliary(x)[0]).softmax(-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class of :meth:`predict_proba`: (N,) int64."""
        return self.predict_proba(x).argmax(-1)

    def encode(
        self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | a, y, x), each (..., N, L), for x (N, D),
        classes y (..., N) and a (..., N, A); without a, at the mean of q(a | x) (the call
        of :meth:`pyrovae.guides.SSVAEGuide.encode`, for figures)."""
        if a is None:
            a = self.auxiliary(x)[0]
        hidden = mlp_on_parts(self.encoder, (x, a), y)
        return gaussian_head(hidden, self.latent_dim, self.min_scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw a ~ q(a | x) at site "a"; y ~ q(y | a, x) at site "y" (marked for
        parallel enumeration) unless the labels y (N,) are given; z ~ q(z | a, y, x) at site
        "z", returned: (N, L), or (C, N, L) under enumeration."""
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.auxiliary(x)
            a = pyro.sample("a", dist.Normal(loc, scale).to_event(1))
            if y is None:
                y = pyro.sample(
                    "y",
                    dist.Categorical(logits=self.class_logits(x, a)),
                    infer={"enumerate": "parallel"},
                )
            loc, scale = self.encode(x, y, a)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
