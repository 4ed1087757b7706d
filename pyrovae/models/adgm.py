"""The auxiliary deep generative model (ADGM) of Maaløe et al. 2016 as a Pyro program.

Generative process, for each row n of the data plate::

    y_n ~ Categorical(1/C, ..., 1/C)        the class (site "y"): observed when labelled
    z_n ~ N(0, I_L)                         the style (site "z")
    x_n ~ p(x | f(z_n, y_n))                decoder on [z, one_hot(y)] (site "x")
    a_n ~ N(mu(x_n, z_n, y_n), diag s^2)    the auxiliary variable (site "a")

The auxiliary a leaves the marginal p(x, y, z) of M2 unchanged (it integrates to one), but
its guide q(a | x) q(y | a, x) q(z | a, y, x) (:class:`pyrovae.guides.ADGMGuide`) has a
richer q(y, z | x) = E_q(a|x)[q(y | a, x) q(z | a, y, x)]: the classifier sees a draw of a
code of x. The ELBO of a labelled pair is
E_q[log p(x, y, z, a) - log q(a | x) - log q(z | a, y, x)]; of an unlabelled x, the same
with y summed exactly under q(y | a, x) by parallel enumeration (TraceEnum_ELBO), plus the
entropy of q(y | a, x). Maaløe, Sønderby, Sønderby & Winther, "Auxiliary Deep Generative
Models", ICML 2016, eq. (10)-(13); :class:`pyrovae.infer.SemiSupervisedELBO` adds the
classification term alpha E_q(a|x)[-log q(y | a, x)] of labelled rows.

Shapes: x (N, D), y (N,) int64; z (..., N, L), a (..., N, A); under enumeration y arrives
as (C, 1) and z, a gain that leading dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from ..nn import MLP, mlp_on_parts
from .ssvae import SSVAE


class ADGM(SSVAE):
    """p(x, y, z, a) = Cat(y; 1/C) N(z; 0, I) p(x | decoder(z, y)) N(a; mu(x, z, y), s^2).

    M2 (:class:`~pyrovae.models.SSVAE`: its sites "y", "z", "x" and decoder) with the
    auxiliary site "a" after them.

    Args:
        input_dim: D, the length of a flattened example.
        num_classes: C.
        latent_dim: L, the dimension of z.
        aux_dim: A, the dimension of a.
        hidden_dims: hidden widths of the decoder and of the network of p(a | x, z, y).
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        image_shape: (C, H, W) of the images, for figures.
        min_scale: a floor on the standard deviation of p(a | x, z, y).
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int = 10,
        latent_dim: int = 100,
        aux_dim: int = 100,
        hidden_dims: Sequence[int] = (500, 500),
        likelihood: str = "bernoulli",
        image_shape: tuple[int, int, int] | None = None,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(input_dim, num_classes, latent_dim, hidden_dims, likelihood, image_shape)
        self.aux_dim, self.min_scale = aux_dim, min_scale
        self.auxiliary = MLP(input_dim + latent_dim + num_classes, hidden_dims, 2 * aux_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Observe x (N, D) at site "x" and, when given, the labels y (N,) at site "y"."""
        with pyro.plate("data", x.shape[0]):
            y, z = self.sample_sites(x, y)
            pyro.sample("a", self.auxiliary_prior(x, z, y))
        return z

    def auxiliary_prior(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor):
        """p(a | x, z, y): a diagonal Gaussian with event shape (A,). x (N, D) enters the
        first layer once, however many classes z (..., N, L) and y carry."""
        hidden = mlp_on_parts(self.auxiliary, (x, z), y)
        loc, raw_scale = hidden.split(self.aux_dim, -1)
        return dist.Normal(loc, softplus(raw_scale) + self.min_scale).to_event(1)
