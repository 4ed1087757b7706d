"""The auxiliary deep generative models of Maaløe et al. 2016 as Pyro programs: the ADGM and
its skip variant, the SDGM.

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

The SDGM (:class:`SDGM`) puts a in the generative path instead: a_n ~ p(a | z_n, y_n),
x_n ~ p(x | a_n, z_n, y_n) (their eq. (14)-(15)); the marginal p(x, y, z) is then no longer
M2's, and the same guide serves both.

Shapes: x (N, D), y (N,) int64; z (..., N, L), a (..., N, A); under enumeration y arrives
as (C, 1) and z, a gain that leading dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..likelihoods import Likelihood
from ..module import LocalPyroModule
from ..nn import MLP, gaussian_head, mlp_on_parts
from .ssvae import SSVAE, check_num_classes


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
        return dist.Normal(*gaussian_head(hidden, self.aux_dim, self.min_scale)).to_event(1)


class SDGM(LocalPyroModule):
    """p(x, y, z, a) = Cat(y; 1/C) N(z; 0, I) N(a; mu(z, y), s^2) p(x | decoder(a, z, y)).

    The skip deep generative model: the auxiliary a sits between (z, y) and x, so the
    decoder reads it. The sites are "y", "z", "a" and "x", in that order; its guide is
    :class:`~pyrovae.guides.ADGMGuide`.

    Args:
        input_dim: D, the length of a flattened example.
        num_classes: C.
        latent_dim: L, the dimension of z.
        aux_dim: A, the dimension of a.
        hidden_dims: hidden widths of the decoder and of the network of p(a | z, y).
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        image_shape: (C, H, W) of the images, for figures.
        min_scale: a floor on the standard deviation of p(a | z, y).
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
        super().__init__()
        check_num_classes(num_classes)
        self.input_dim, self.num_classes, self.image_shape = input_dim, num_classes, image_shape
        self.latent_dim, self.aux_dim, self.min_scale = latent_dim, aux_dim, min_scale
        self.auxiliary = MLP(latent_dim + num_classes, hidden_dims, 2 * aux_dim)
        self.decoder = MLP(aux_dim + latent_dim + num_classes, hidden_dims, input_dim)
        self.likelihood = Likelihood(likelihood, input_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Observe x (N, D) at site "x" and, when given, the labels y (N,) at site "y"."""
        n = x.shape[0]
        with pyro.plate("data", n):
            prior_y = dist.Categorical(logits=x.new_zeros(n, self.num_classes))
            y = pyro.sample("y", prior_y, obs=y)
            z = pyro.sample("z", dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1))
            a = pyro.sample("a", self.auxiliary_prior(z, y))
            pyro.sample("x", self.decode(z, y, a), obs=x)
        return z

    def auxiliary_prior(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(a | z, y): a diagonal Gaussian with event shape (A,)."""
        hidden = mlp_on_parts(self.auxiliary, (z,), y)
        return dist.Normal(*gaussian_head(hidden, self.aux_dim, self.min_scale)).to_event(1)

    def decode(self, z: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> dist.Distribution:
        """p(x | a, z, y) for a (..., A), z (..., L) and y (...,): event shape (D,)."""
        return self.likelihood(mlp_on_parts(self.decoder, (a, z), y))

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x | a, z, y] at a = E[a | z, y], for each (z, y) pair: (..., D)."""
        a = self.auxiliary_prior(z, y).mean
        return self.decode(z, y, a).mean
