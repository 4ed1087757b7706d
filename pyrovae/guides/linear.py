"""Linear-Gaussian guides q(z | x) for :class:`~pyrovae.models.FactorAnalysis`.

- :class:`LinearGaussianEncoder`: q(z | x) = N(A x + c, S), an amortized guide whose
  family contains the exact factor-analysis posterior (a linear mean, one covariance
  shared by all rows), so its ELBO can reach log p(x).
- :class:`ExactPosteriorGuide`: samples the model's own posterior p(z | x). Then
  log p(x, z) - log q(z | x) = log p(x) for every draw z: the ELBO equals log p(x) with
  zero variance, and every importance weight equals p(x).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..models.factor_analysis import FactorAnalysis
from ..module import LocalPyroModule

_SOFTPLUS_INVERSE_OF_ONE = 0.5413248546129181  # log(e - 1): an initial scale of 1


class LinearGaussianEncoder(LocalPyroModule):
    """q(z | x) = N(z; A x + c, S) for rows x (N, D), codes z (N, L).

    S = T T^T with T (L, L) lower triangular with a positive diagonal, learned and shared
    by all rows (``full_covariance=True``); or S = diag(s^2) (``full_covariance=False``,
    mean field). For factor analysis the exact posterior has A = Sigma W^T Psi^{-1},
    c = -A b and S = Sigma (see :meth:`~pyrovae.models.FactorAnalysis.posterior`), inside the full
    family.

    Args:
        input_dim: D.
        latent_dim: L.
        full_covariance: learn a full S instead of a diagonal one.
        site: the latent site it samples.
        min_scale: floor on the diagonal of T (or on s).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        full_covariance: bool = True,
        site: str = "z",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.full_covariance = full_covariance
        self.site = site
        self.min_scale = float(min_scale)
        self.linear = nn.Linear(input_dim, latent_dim)
        # Off-diagonal entries of T below the diagonal, its diagonal through softplus.
        shape = (latent_dim, latent_dim) if full_covariance else (latent_dim,)
        raw = torch.zeros(shape)
        (raw.diagonal() if full_covariance else raw).fill_(_SOFTPLUS_INVERSE_OF_ONE)
        self.raw_scale = nn.Parameter(raw)

    @property
    def scale_tril(self) -> torch.Tensor:
        """T (L, L): the lower Cholesky factor of S (diagonal when not ``full_covariance``)."""
        if not self.full_covariance:
            return torch.diag_embed(softplus(self.raw_scale) + self.min_scale)
        diagonal = softplus(self.raw_scale.diagonal()) + self.min_scale
        return self.raw_scale.tril(-1) + torch.diag_embed(diagonal)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean (N, L) and marginal standard deviations sqrt(diag S) (N, L)."""
        loc = self.linear(x)
        if self.full_covariance:
            scale = self.scale_tril.square().sum(-1).sqrt()
        else:
            scale = softplus(self.raw_scale) + self.min_scale
        return loc, scale.expand_as(loc)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z ~ N(A x + b, S) at the latent site (S diagonal, or full when
        ``full_covariance``), for rows x (N, D). Returns z (N, L)."""
        loc = self.linear(x)
        with pyro.plate("data", x.shape[0]):
            if self.full_covariance:
                q = dist.MultivariateNormal(loc, scale_tril=self.scale_tril)
            else:
                scale = softplus(self.raw_scale) + self.min_scale
                q = dist.Normal(loc, scale.expand_as(loc)).to_event(1)
            return pyro.sample(self.site, q)


class ExactPosteriorGuide(LocalPyroModule):
    """q(z | x) = p(z | x) = N(z; mean(x), Sigma) of a :class:`~pyrovae.models.FactorAnalysis`, rows
    x (N, D).

    It holds the model by reference without registering it as a submodule: its own
    ``parameters()`` is empty, so a (model, guide) pair counts the model's parameters once.
    The draw is reparameterised through the model's parameters; since the ELBO with this
    guide equals log p(x) for every parameter value, its gradient is that of log p(x).
    """

    def __init__(self, model: FactorAnalysis) -> None:
        super().__init__()
        self._model = (model,)  # a tuple: nn.Module does not register what it holds
        self.site = "z"

    @property
    def model(self) -> FactorAnalysis:
        """The factor-analysis model whose exact posterior this guide draws from."""
        return self._model[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z from the model's exact posterior p(z | x) = N(m(x), S) at the latent
        site, for rows x (N, D). Returns z (N, L)."""
        mean, covariance = self.model.posterior(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample(self.site, dist.MultivariateNormal(mean, covariance))
