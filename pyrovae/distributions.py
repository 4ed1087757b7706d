"""Multivariate normals that broadcast K components against N rows cheaply.

Both compute ``log_prob`` in float64 whatever the inputs' precision, about a reference point
``centre`` (e.g. a mixture's centre of mass) that keeps the cancellation of the expanded
quadratic forms small, and return the result in the inputs' dtype. The Gaussian mixture
(:mod:`pyrovae.models.mixture`) uses them as its component densities.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch.distributions.multivariate_normal import _batch_mahalanobis


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_d a_d b_d over the last dimension, broadcasting the others. When a is a matrix of
    rows (N, D) and b has a singleton row axis (..., 1, D), as K components under parallel
    enumeration do, this is the matrix product b @ a^T (..., N), with no (..., N, D) array."""
    if a.dim() == 2 and b.dim() >= 2 and b.shape[-2] == 1:
        return b.squeeze(-2) @ a.T
    return (a * b).sum(-1)


class DiagonalNormal(dist.TorchDistribution):
    """N(loc, diag(exp(log_variance))) over the last dimension, D = loc.shape[-1].

    ``log_prob`` expands the quadratic form, sum_d (v_d - m_d)^2 / s_d =
    v^2 . (1/s) - 2 v . (m/s) + m^2 . (1/s), with v = value - centre and m = loc - centre, so
    that broadcasting K components against N rows costs two (N, D) x (D, K) matrix products
    instead of a (K, N, D) array (as scikit-learn does); ``centre`` (D,), e.g. the mixture's
    centre of mass, keeps the cancellation small. The products run in float64 whatever the
    inputs' precision (error about 1e-16 |v|^2 / s, where float32 would lose 1e-7 |v|^2 / s);
    the result comes back in the inputs' dtype. ``expand`` copies no parameters.
    """

    arg_constraints = {"loc": constraints.real_vector, "log_variance": constraints.real_vector}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        log_variance: torch.Tensor,
        centre: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.log_variance = loc, log_variance
        self.centre = loc.new_zeros(loc.shape[-1]) if centre is None else centre
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], log_variance.shape[:-1])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> DiagonalNormal:
        new = self._get_checked_instance(DiagonalNormal, _instance)
        new.loc, new.log_variance, new.centre = self.loc, self.log_variance, self.centre
        super(DiagonalNormal, new).__init__(torch.Size(batch_shape), self.event_shape, False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> torch.Tensor:
        return self.log_variance.exp().expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + noise * (0.5 * self.log_variance).exp()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = torch.promote_types(value.dtype, self.loc.dtype)
        v = (value - self.centre).double()
        m = (self.loc - self.centre).double()
        log_variance = self.log_variance.double()
        precision = (-log_variance).exp()
        log_norm = log_variance.sum(-1) + self.loc.shape[-1] * math.log(2 * math.pi)
        constant = (m.square() * precision).sum(-1) + log_norm
        if v.dim() == 2 and m.dim() >= 2 and m.shape[-2] == 1:
            # Rows (N, D) against components (..., 1, D): one product of [v^2, v, 1] (N, 2D + 1)
            # with [1/s, -2 m/s, c] (..., 2D + 1), the whole log-density in a single pass.
            features = torch.cat([v.square(), v, v.new_ones(v.shape[0], 1)], -1)
            weights = torch.cat([precision, -2 * m * precision, constant.unsqueeze(-1)], -1)
            quad = weights.expand(m.shape[:-1] + weights.shape[-1:]).squeeze(-2) @ features.T
        else:
            quad = _inner(v.square(), precision) - 2 * _inner(v, m * precision) + constant
        out = (-0.5 * quad).to(dtype)
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))


class CholeskyNormal(dist.TorchDistribution):
    """N(loc, L L^T) with lower Cholesky factors ``scale_tril`` (..., D, D), computed in float64
    in the way that suits broadcasting K components against N rows.

    With v = value - centre, m = loc - centre and the precision P = (L L^T)^{-1}:

    - one L shared by all components (tied): whiten once, w = L^{-1} v (N, D), then
      |w - L^{-1} m|^2 = |w|^2 - 2 w . L^{-1} m + |L^{-1} m|^2, a (N, D) x (D, K) product;
    - K factors with D <= K (full, few dimensions): v^T P v = vec(v v^T) . vec(P), an
      (N, D^2) x (D^2, K) product, minus 2 v . P m plus m . P m;
    - K factors with D > K against rows (N, D) (a mixture's components under enumeration,
      factors (..., 1, D, D)): every row whitened by all K factors in one (K D, D) x (D, N)
      product, |L_k^{-1} v - L_k^{-1} m_k|^2, in the inputs' precision: it subtracts before
      squaring, so it cancels no more than ``MultivariateNormal`` (whose triangular solve per
      factor it replaces by a matrix product, forward and backward);
    - otherwise, |L_k^{-1} (v - m_k)|^2 from (K, N, D) differences, like
      ``MultivariateNormal`` (no cancellation at all).

    The expanded forms cancel to about 1e-16 |v|^2_P in float64, harmless about a centre of
    mass.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale_tril: torch.Tensor,
        centre: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale_tril = loc, scale_tril
        self.centre = loc.new_zeros(loc.shape[-1]) if centre is None else centre
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> CholeskyNormal:
        new = self._get_checked_instance(CholeskyNormal, _instance)
        new.loc, new.scale_tril, new.centre = self.loc, self.scale_tril, self.centre
        super(CholeskyNormal, new).__init__(torch.Size(batch_shape), self.event_shape, False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self.scale_tril @ noise.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = torch.promote_types(value.dtype, self.loc.dtype)
        d = self.loc.shape[-1]
        tril = self.scale_tril
        factors = tril.shape[:-2].numel()
        if d > factors > 1 and value.dim() == 2 and tril.dim() >= 3 and tril.shape[-3] == 1:
            return self._whitened_log_prob(value, dtype)
        v = (value - self.centre).double()
        m = (self.loc - self.centre).double().unsqueeze(-1)  # (..., D, 1)
        tril = tril.double()
        if factors == 1:
            tril = tril.reshape(d, d)
            w = torch.linalg.solve_triangular(tril, v.reshape(-1, d).T, upper=False).T
            w = w.reshape(v.shape)
            u = torch.linalg.solve_triangular(tril, m, upper=False).squeeze(-1)
            quad = w.square().sum(-1) - 2 * _inner(w, u)
            quad = quad + u.square().sum(-1)
        elif d <= factors:
            precision = torch.cholesky_inverse(tril)
            pm = (precision @ m).squeeze(-1)
            outer = (v.unsqueeze(-1) * v.unsqueeze(-2)).flatten(-2)  # (..., D^2)
            quad = _inner(outer, precision.flatten(-2))
            quad = quad - 2 * _inner(v, pm)
            quad = quad + (m.squeeze(-1) * pm).sum(-1)
        else:  # torch's own helper solves without broadcasting L to every row
            quad = _batch_mahalanobis(tril, v - m.squeeze(-1))
        half_log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        out = (-0.5 * (quad + d * math.log(2 * math.pi)) - half_log_det).to(dtype)
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))

    def _whitened_log_prob(self, value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """log N(value_n; m_k, L_k L_k^T) for rows value (N, D) and factors (..., 1, D, D):
        w = [L_1^-1; ...; L_K^-1] (v_1 ... v_N), one (K D, D) x (D, N) product, then
        |w_k,n - L_k^-1 m_k|^2 (..., N), in ``dtype``."""
        d, n = value.shape[-1], value.shape[0]
        tril = self.scale_tril.to(dtype)
        lead = torch.broadcast_shapes(tril.shape[:-3], self.loc.shape[:-2])
        tril = tril.expand(lead + (1, d, d)).squeeze(-3)  # (..., D, D)
        eye = torch.eye(d, dtype=dtype, device=tril.device)
        inverse = torch.linalg.solve_triangular(tril, eye.expand_as(tril), upper=False)
        v = (value - self.centre).to(dtype)  # (N, D)
        m = (self.loc - self.centre).to(dtype).expand(lead + (1, d)).squeeze(-2)  # (..., D)
        w = (inverse.reshape(-1, d) @ v.T).view(lead + (d, n))  # (..., D, N)
        offset = inverse @ m.unsqueeze(-1)  # (..., D, 1)
        quad = (w - offset).square().sum(-2)  # (..., N)
        half_log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1, keepdim=True)
        out = -0.5 * (quad + d * math.log(2 * math.pi)) - half_log_det
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))
