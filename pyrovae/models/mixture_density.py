"""The Gaussian mixture's log-joint in closed form, for the E-step's inner loop.

:meth:`GaussianMixture.log_joint <pyrovae.models.GaussianMixture.log_joint>` reads
log p(x_n, z_n = k) off the Pyro program under parallel enumeration: the source of truth,
and what SVI differentiates. EM needs the same (K, B) array for every chunk of every
iteration with the parameters fixed, and there the program's trace (the messenger stack, the
site checks, one distribution per call) costs more than the arithmetic on small data.
:class:`~pyrovae.models.mixture_density.MixtureLogJoint` is that contraction written out once per
iteration, from the parameters, for rows centred at a reference point c (the mixture's centre of
mass), v_n = x_n - c, m_k = mu_k - c:

    log p(x_n, z_n = k) = log pi_k - D/2 log(2 pi) - 1/2 log |Sigma_k| - 1/2 q_nk,

    diag       q_nk = sum_d v_nd^2 / s_kd - 2 sum_d v_nd m_kd / s_kd + sum_d m_kd^2 / s_kd
    spherical  q_nk = |v_n|^2 / s_k - 2 v_n . m_k / s_k + |m_k|^2 / s_k
    tied       q_nk = |w_n|^2 - 2 w_n . u_k + |u_k|^2,  w_n = L^-1 v_n, u_k = L^-1 m_k
    full       q_nk = |L_k^-1 v_n - L_k^-1 m_k|^2

The first three are matrix products of (K, D) with (D, B) rows (as scikit-learn computes
them), in float64: their expansion cancels to about 1e-16 |v|^2 / s, small about a centre of
mass. The full form whitens every row by all K factors in one (K D, D) x (D, B) product (no
triangular solve per row and no (K, B, D) difference array), and subtracts before squaring,
so it does not cancel. ``tests/models/test_mixture_density.py`` checks every
form against the program's enumeration.
"""

from __future__ import annotations

import math

import torch


class MixtureLogJoint:
    """log p(x_n, z_n = k) (K, B) of a Gaussian mixture for rows centred at ``centre``.

    Args:
        covariance: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        log_weights: log pi (K,).
        loc: the means mu (K, D).
        spread: the lower Cholesky factors, (K, D, D) full or (D, D) tied, or the log
            variances, (K, D) diag or (K,) spherical.
        centre: c (D,), the reference point rows are centred at before the call.
        dtype: the precision of the products (float64 by default). The constants, inverses
            and offsets are computed in float64 and then converted; calls take rows in this
            dtype. float32 is about twice as fast on wide rows and errs by about 1e-7 of the
            expanded terms |v|^2 / s (see :class:`~pyrovae.models.GaussianMixture`'s
            ``compute_dtype``).

    The result is laid out (K, B), components by rows, as the program's enumeration gives
    it: the products are then (K, D) x (D, B), measured faster on thin K than
    (B, D) x (D, K).
    """

    def __init__(
        self,
        covariance: str,
        log_weights: torch.Tensor,
        loc: torch.Tensor,
        spread: torch.Tensor,
        centre: torch.Tensor,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.covariance, self.dtype = covariance, dtype
        k, d = loc.shape
        self.dim, self.num_components = d, k
        m = (loc - centre).double()  # (K, D)
        constant = log_weights.double() - 0.5 * d * math.log(2 * math.pi)
        # Each form's terms (see the module docstring), in float64; those it lacks stay None.
        precision = whiten = offset = None
        if covariance in ("diag", "spherical"):
            log_variance = spread.double()
            precision = (-log_variance).exp()  # (K, D) or (K,)
            if covariance == "spherical":
                log_det = d * log_variance
                precision = precision.unsqueeze(-1)  # (K, 1)
            else:
                log_det = log_variance.sum(-1)
            linear = m * precision  # (K, D): m_k / s_k
            constant = constant - 0.5 * (log_det + (m.square() * precision).sum(-1))
        else:
            tril = spread.double()
            eye = torch.eye(d, dtype=tril.dtype, device=tril.device)
            inverse = torch.linalg.solve_triangular(tril, eye.expand_as(tril), upper=False)
            log_det = 2 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,) or ()
            if covariance == "tied":
                whiten = inverse  # (D, D): L^-1
                linear = m @ inverse.T  # (K, D): u_k = L^-1 m_k
                constant = constant - 0.5 * (log_det + linear.square().sum(-1))
            else:
                whiten = inverse.reshape(k * d, d)  # (K D, D): the L_k^-1 stacked
                offset = inverse @ m.unsqueeze(-1)  # (K, D, 1): L_k^-1 m_k
                linear = None
                constant = constant - 0.5 * log_det

        def cast(term: torch.Tensor | None) -> torch.Tensor | None:
            return None if term is None else term.to(dtype)

        self.constant = cast(constant.unsqueeze(-1))  # (K, 1)
        self.linear, self.precision = cast(linear), cast(precision)
        self.whiten, self.offset = cast(whiten), cast(offset)

    def __call__(self, centred: torch.Tensor, square: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_n, z_n = k) (K, B) for rows v = x - centre (B, D) in :attr:`dtype`;
        ``square``, v^2, may be passed when the caller has it (diag and spherical use it)."""
        covariance, rows = self.covariance, centred.T  # (D, B)
        if covariance in ("diag", "spherical"):
            square = centred.square() if square is None else square
            joint = torch.addmm(self.constant, self.linear, rows)
            if covariance == "diag":
                return joint.addmm_(self.precision, square.T, alpha=-0.5)
            return joint.sub_(0.5 * self.precision * square.sum(-1))
        w = self.whiten @ rows  # (D, B) tied, (K D, B) full
        if covariance == "tied":
            joint = torch.addmm(self.constant, self.linear, w)
            return joint.sub_(0.5 * w.square().sum(0))
        k, d = self.num_components, self.dim
        quad = w.view(k, d, -1).sub_(self.offset).square_().sum(1)  # (K, B)
        return quad.mul_(-0.5).add_(self.constant)


__all__ = ["MixtureLogJoint"]
