"""The semi-supervised VAE "M2" of Kingma et al. 2014 as a Pyro program.

Generative process, for each row n of the data plate::

    y_n ~ Categorical(1/C, ..., 1/C)     the class (site "y"): observed when labelled
    z_n ~ N(0, I_L)                      the style, independent of the class (site "z")
    x_n ~ p(x | f_theta(z_n, y_n))       decoder on [z, one_hot(y)] and likelihood (site "x")

For a labelled pair the ELBO is L(x, y) = E_q(z|x,y)[log p(x, y, z) - log q(z | x, y)];
for an unlabelled x, U(x) = sum_y q(y | x) L(x, y) + H(q(y | x)), with the sum over the C
classes done exactly by parallel enumeration in :class:`~pyro.infer.TraceEnum_ELBO`
(the guide, :class:`pyrovae.guides.SSVAEGuide`, marks its y site for enumeration).
Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative
Models", NeurIPS 2014, section 3.1.2 and eq. (6)-(8); the classification term of eq. (9)
is added by :class:`pyrovae.infer.SemiSupervisedELBO`.

Shapes: x is (N, D), y is (N,) int64 class indices; under enumeration y arrives as
(C, 1, ...) and every tensor derived from it gains that leading dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..likelihoods import Likelihood
from ..module import LocalPyroModule
from ..nn import MLP, mlp_with_class


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` >= 2: with one class there is nothing to
    learn from labels and nothing to classify."""
    if num_classes < 2:
        raise ValueError(f"a semi-supervised model needs at least 2 classes, got {num_classes}")


class SSVAE(LocalPyroModule):
    """p(x, y, z) = Cat(y; 1/C) N(z; 0, I) p(x | decoder(z, y)) over rows x (N, D).

    Args:
        input_dim: D, the length of a flattened example.
        num_classes: C, the number of classes of y.
        latent_dim: L, the dimension of the style z.
        hidden_dims: widths of the decoder's hidden layers (an MLP on [z, one_hot(y)]).
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        image_shape: (C, H, W) of the images, for figures.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int = 10,
        latent_dim: int = 50,
        hidden_dims: Sequence[int] = (500,),
        likelihood: str = "bernoulli",
        image_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.decoder = MLP(latent_dim + num_classes, hidden_dims, input_dim)
        self.likelihood = Likelihood(likelihood, input_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Observe x (N, D) at site "x" and, when given, the labels y (N,) at site "y"."""
        with pyro.plate("data", x.shape[0]):
            _, z = self.sample_sites(x, y)
        return z

    def sample_sites(
        self, x: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sites "y", "z" and "x" inside the caller's data plate; returns (y, z), y the
        labels or the draw (under enumeration (C, 1)), z (..., N, L). For models that add
        sites to M2's, e.g. :class:`~pyrovae.models.ADGM`."""
        n = x.shape[0]
        prior_y = dist.Categorical(logits=x.new_zeros(n, self.num_classes))
        y = pyro.sample("y", prior_y, obs=y)
        z = pyro.sample("z", dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1))
        pyro.sample("x", self.decode(z, y), obs=x)
        return y, z

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(x | z, y) for styles z (..., L) and classes y (...,): event shape (D,)."""
        return self.likelihood(mlp_with_class(self.decoder, z, y))

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x | z, y], the mean image of each (z, y) pair: (..., D)."""
        return self.decode(z, y).mean
