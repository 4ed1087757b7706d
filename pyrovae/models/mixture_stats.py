"""The Gaussian mixture's EM arithmetic: sufficient statistics and the closed-form M-step.

:func:`mixture_statistics` streams the data in chunks into the sums of one E-step
(:class:`MixtureStatistics`), and :func:`mixture_m_step` turns them into the maximum-likelihood
or MAP parameters (PRML eqs. 9.24-9.27; Fraley & Raftery 2007).
:meth:`GaussianMixture.em_step <pyrovae.models.mixture_steps.MixtureEM.em_step>` and
:meth:`~pyrovae.models.mixture_steps.MixtureEM.initialize` call them; ``pyrovae.models.fit_mixture``
(:mod:`pyrovae.models.mixture_em`) drives the iterations.

Both functions read only the attributes of :class:`MixtureModel` from the model, so this
module imports nothing from pyrovae but ``pyrovae.ranks``: :mod:`pyrovae.models.mixture`
imports it, never the other way round.

Under torch.distributed (e.g. ``torchrun``) every rank passes the same rows; each streams
only its contiguous share of them and the sums are all-reduced (the K worst rows gathered),
so every rank holds the statistics of all rows and takes the same M-step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..ranks import shard_bounds, world

#: ``expectation(chunk (B, D), centred (B, D) or None, square (B, D) or None)`` ->
#: (log p(x_n) (B,), responsibilities r^T (K, B)); see :func:`mixture_statistics`.
Expectation = Callable[
    [torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]
]


class MixtureModel(Protocol):
    """What the statistics and the M-step read of a :class:`~pyrovae.models.GaussianMixture`:
    its sizes, covariance type, regularisation, prior (a
    :class:`~pyrovae.models.MixturePrior` or None, with ``prior_mean`` (D,) when it has one),
    its means ``loc`` (K, D) (their dtype and device), and its chunking."""

    num_components: int
    dim: int
    covariance: str
    reg_covar: float
    prior: Any
    prior_mean: torch.Tensor
    loc: torch.Tensor

    def per_component(self) -> bool: ...

    def chunks(self, x: torch.Tensor, chunk_size: int | None = None) -> Iterator[torch.Tensor]: ...


@dataclass
class MixtureStatistics:
    """Sums over the data of one E-step of a Gaussian mixture, about reference points c_k.

    Attributes:
        count: N.
        total: sum_n score_n (the log-likelihood, in EM).
        nk: N_k = sum_n r_nk (K,).
        s1: sum_n r_nk (x_n - c_k) (K, D).
        s2: sum_n r_nk (x_n - c_k)(x_n - c_k)^T: (K, D, D) full, summed over k (D, D) tied,
            its diagonal (K, D) diag and spherical.
        worst, worst_rows: the K lowest scores (K,) and their rows (K, D).
    """

    count: int
    total: torch.Tensor
    nk: torch.Tensor
    s1: torch.Tensor
    s2: torch.Tensor
    worst: torch.Tensor
    worst_rows: torch.Tensor


def mixture_statistics(
    model: MixtureModel,
    x: torch.Tensor,
    expectation: Expectation,
    centres: torch.Tensor,
    chunk_size: int | None = None,
) -> MixtureStatistics:
    """Stream rows x (N, D) through ``expectation(chunk, centred, square) -> (score (B,),
    r^T (K, B))`` chunk by chunk and sum the statistics about ``centres``.

    With ``model.per_component()`` (full covariances, D > K) the centres are the K current
    means and the sums take (K, B, D) differences in the model's dtype, so the scatter about
    the new means does not cancel. Otherwise c is one point (1, D), the mixture's centre of
    mass, and the sums are matrix products in the model's ``compute_dtype`` (float64 by
    default): r^T (x - c), r^T (x - c)^2 (diag, spherical), r^T vec((x - c)(x - c)^T) (full)
    and (x - c)^T (x - c) (tied, as sum_k r_nk = 1). The sums across chunks are kept in
    float64 whatever the model's dtype: float32 would round sums over millions of rows.
    With one centre, ``centred`` = (chunk - c) (B, D)
    and, for diag and spherical covariances, ``square`` = centred^2 are computed once and
    handed to ``expectation``, which may use them (a closed-form E-step about the same c does);
    otherwise both are None.
    """
    k, d, covariance = model.num_components, model.dim, model.covariance
    like = model.loc.detach().double()
    shapes = {"full": (k, d, d), "tied": (d, d)}
    total, nk, s1 = like.new_zeros(()), like.new_zeros(k), like.new_zeros(k, d)
    s2 = like.new_zeros(shapes.get(covariance, (k, d)))
    worst, worst_rows = like.new_full((k,), math.inf), like.new_zeros(k, d)
    per_component = model.per_component()
    squares = covariance in ("diag", "spherical")
    compute = getattr(model, "compute_dtype", torch.float64)
    rank, ranks = world()
    mine = x[slice(*shard_bounds(x.shape[0], rank, ranks))]  # this rank's rows (all of one)
    for chunk in model.chunks(mine, chunk_size):
        if per_component:
            score, resp = expectation(chunk, None, None)
            diff = chunk - centres.unsqueeze(1)  # (K, B, D), the model's dtype
            weighted = resp.unsqueeze(-1) * diff
            s1 += weighted.sum(1).double()
            moments = (weighted.mT @ diff).double()
            s2 += moments if covariance == "full" else moments.sum(0)
        else:
            diff = (chunk - centres).to(compute)  # (B, D)
            square = diff.square() if squares else None
            score, resp = expectation(chunk, diff, square)
            resp = resp.to(compute)  # (K, B)
            s1 += (resp @ diff).double()
            if covariance == "full":
                outer = (diff.unsqueeze(-1) * diff.unsqueeze(-2)).flatten(1)
                s2 += (resp @ outer).double().view(k, d, d)
            else:
                s2 += (diff.T @ diff if covariance == "tied" else resp @ square).double()
        total += score.double().sum()
        nk += resp.double().sum(-1)
        worst, index = torch.cat([worst, score.double()]).topk(k, largest=False)
        old = (index < k).unsqueeze(-1)
        rows = chunk[(index - k).clamp_min(0)].double()
        worst_rows = torch.where(old, worst_rows[index.clamp_max(k - 1)], rows)
    if ranks > 1:
        total, nk, s1, s2, worst, worst_rows = _all_reduce(total, nk, s1, s2, worst, worst_rows)
    return MixtureStatistics(x.shape[0], total, nk, s1, s2, worst, worst_rows)


def _all_reduce(total, nk, s1, s2, worst, worst_rows) -> tuple[torch.Tensor, ...]:
    """The sums over ranks, and the K lowest scores of all ranks with their rows."""
    dist = torch.distributed
    k = nk.shape[0]
    packed = torch.cat([total.reshape(1), nk, s1.flatten(), s2.flatten()])
    dist.all_reduce(packed)
    sizes = [1, nk.numel(), s1.numel(), s2.numel()]
    total, nk, s1, s2 = (
        part.reshape(like.shape)
        for part, like in zip(packed.split(sizes), (total, nk, s1, s2), strict=True)
    )
    scores = [torch.empty_like(worst) for _ in range(dist.get_world_size())]
    rows = [torch.empty_like(worst_rows) for _ in scores]
    dist.all_gather(scores, worst)
    dist.all_gather(rows, worst_rows)
    worst, index = torch.cat(scores).topk(k, largest=False)
    return total, nk, s1, s2, worst, torch.cat(rows)[index]


def mixture_m_step(
    model: MixtureModel, stats: MixtureStatistics, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """The closed-form M-step: (weights (K,), means (K, D), covariances in the model's layout,
    the re-seeded components).

    Maximum likelihood (PRML eqs. 9.24-9.27), with xbar_k = c_k + s1_k / N_k and the scatter
    S_k = s2_k - s1_k s1_k^T / N_k about it: pi_k = N_k / N, mu_k = xbar_k, Sigma_k = S_k / N_k
    (tied: sum_k S_k / N; diag: the diagonal; spherical: its mean), plus ``reg_covar`` on the
    diagonal. With a :class:`~pyrovae.models.mixture.MixturePrior` (alpha, kappa, m0, nu, psi),
    the MAP update (Fraley & Raftery 2007): pi_k = (N_k + alpha - 1) / (N + K (alpha - 1)),
    mu_k = (N_k xbar_k + kappa m0) / (N_k + kappa), B_k = S_k + kappa N_k / (kappa + N_k)
    (xbar_k - m0)(xbar_k - m0)^T and, with m = 1 if kappa > 0 else 0,

        full       Sigma_k = (psi I + B_k) / (N_k + m + nu + D + 1)
        tied       Sigma   = (psi I + sum_k B_k) / (N + K m + nu + D + 1)
        diag       s_kd    = (psi + B_k,dd) / (N_k + m + nu + 2)
        spherical  s_k     = (psi + tr B_k) / ((N_k + m) D + nu + 2)

    (without a covariance prior, psi and the nu terms drop out). A component with
    N_k <= eps N holds no point: it moves to one of the worst-explained rows, with weight 1/N
    before renormalising and the N_k-weighted average covariance of the others.
    """
    k, d, n, nk = model.num_components, model.dim, stats.count, stats.nk
    covariance = model.covariance
    empty = nk <= torch.finfo(nk.dtype).eps * n
    count = torch.where(empty, torch.ones_like(nk), nk)
    s1 = stats.s1
    xbar = centres.double() + s1 / count.unsqueeze(-1)  # (K, D), float64 like the sums
    if covariance in ("full", "tied"):
        outer = s1.unsqueeze(-1) * s1.unsqueeze(-2) / count[:, None, None]  # (K, D, D)
        scatter = stats.s2 - (outer if covariance == "full" else outer.sum(0))
    else:  # a sum of squares: clamp the rounding below zero
        scatter = (stats.s2 - s1.square() / count.unsqueeze(-1)).clamp_min(0.0)
    prior = model.prior
    alpha = prior.concentration if prior else 1.0
    kappa = prior.mean_precision if prior else 0.0
    nu = prior.degrees_of_freedom if prior else None
    psi = prior.covariance_scale if nu is not None else 0.0
    m = 1.0 if kappa > 0 else 0.0
    mean = xbar
    if kappa > 0:
        m0 = model.prior_mean.double()
        mean = (nk.unsqueeze(-1) * xbar + kappa * m0) / (nk + kappa).unsqueeze(-1)
        offset, shrink = xbar - m0, (kappa * nk / (kappa + nk)).unsqueeze(-1)
        if covariance in ("full", "tied"):
            extra = shrink.unsqueeze(-1) * offset.unsqueeze(-1) * offset.unsqueeze(-2)
            scatter = scatter + (extra if covariance == "full" else extra.sum(0))
        else:
            scatter = scatter + shrink * offset.square()
    eye = torch.eye(d, dtype=nk.dtype, device=nk.device)
    iw = nu + d + 1 if nu is not None else 0.0  # the inverse-Wishart's log-determinant weight
    ig = nu + 2 if nu is not None else 0.0  # the inverse-gamma's
    reg = model.reg_covar
    if covariance == "full":
        cov = (scatter + psi * eye) / (count + m + iw)[:, None, None] + reg * eye
    elif covariance == "tied":
        cov = (scatter + psi * eye) / (n + k * m + iw) + reg * eye
    elif covariance == "diag":
        cov = (scatter + psi) / (count + m + ig).unsqueeze(-1) + reg
    else:
        cov = (scatter.sum(-1) + psi) / ((count + m) * d + ig) + reg
    weights = (nk + alpha - 1) / (n + k * (alpha - 1))
    reseeded = empty.nonzero().flatten().tolist()
    if reseeded:
        index = empty.nonzero().flatten()
        mean = mean.clone()
        mean[index] = stats.worst_rows[: len(index)]
        weights = torch.where(empty, 1.0 / n, weights)
        weights = weights / weights.sum()
        if covariance != "tied":
            shape = (k,) + (1,) * (cov.dim() - 1)
            share = (torch.where(empty, 0.0, nk) / nk[~empty].sum()).reshape(shape)
            cov = torch.where(empty.reshape(shape), (share * cov).sum(0), cov)
    return weights, mean, cov, reseeded


__all__ = ["MixtureModel", "MixtureStatistics", "mixture_m_step", "mixture_statistics"]
