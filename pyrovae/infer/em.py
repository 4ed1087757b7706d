"""Expectation-maximisation for models with a closed-form M-step.

For any distribution q(z) over the latents,

    log p(x; theta) = F(q, theta) + KL(q(z) || p(z | x; theta)),
    F(q, theta) = E_q[log p(x, z; theta)] - E_q[log q(z)] <= log p(x; theta).

The E-step sets q = p(z | x; theta_t), closing the gap (F = log p(x; theta_t)); the M-step
maximises F over theta with q fixed. Hence

    log p(x; theta_{t+1}) >= F(q_t, theta_{t+1}) >= F(q_t, theta_t) = log p(x; theta_t):

the log-likelihood never decreases (Dempster, Laird & Rubin 1977; Neal & Hinton 1998).
A model takes part by implementing ``em_step(x) -> float``: one E- and M-step in place,
returning the mean log p(x_n) per example at the parameters it started from. A model may set
``em_reset = True`` after a step that left the monotone path on purpose (the mixture
re-seeding an empty component): :func:`em` then records the iteration in
:attr:`EMHistory.resets` and does not read the next change as convergence.

For the Gaussian mixture, :func:`mixture_statistics` streams the data in chunks into its
sufficient statistics, :func:`mixture_m_step` is the closed-form (or MAP) update, and
:func:`fit_mixture` runs EM from k-means++ seeds with restarts, the counterpart of
scikit-learn's ``GaussianMixture.fit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .fit import TrainingDiverged

if TYPE_CHECKING:
    from ..models.mixture import GaussianMixture, MixturePrior


@dataclass
class EMHistory:
    """The run of :func:`em`.

    Attributes:
        log_likelihood: mean log p(x_n) (nats per example) at the parameters entering each
            iteration; the model itself ends one update past the last entry.
        converged: whether the improvement fell below ``tol`` before ``max_iter``.
        iterations: the number of ``em_step`` calls.
        resets: the iterations (1-based) after which the model set ``em_reset``.
        restarts: :func:`fit_mixture` only: the final mean log-likelihood of every restart;
            this history is that of the best.
    """

    log_likelihood: list[float] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    resets: list[int] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)


def em(
    model: Any,
    x: torch.Tensor,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    progress: bool = True,
    callback: Callable[[EMHistory], None] | None = None,
    desc: str = "em",
) -> EMHistory:
    """Run ``model.em_step(x)`` until the mean log-likelihood improves by less than ``tol``.

    Args:
        model: anything with ``em_step(x) -> float`` (mean log p(x_n) before the update),
            e.g. :class:`~pyrovae.models.FactorAnalysis`.
        x: the data, rows (N, D), passed to ``em_step`` unchanged.
        max_iter: the most iterations to run.
        tol: stop once log-likelihood(t) - log-likelihood(t - 1) < tol, in nats per example.
        progress: show a tqdm bar with the current value.
        callback: called as ``callback(history)`` after every iteration.
        desc: the progress bar's label.

    Returns:
        :class:`EMHistory` with the per-iteration values, whether ``tol`` was reached and the
        number of iterations.

    Raises:
        TypeError: the model has no ``em_step`` method.
        TrainingDiverged: the log-likelihood became NaN or infinite.
    """
    step = getattr(model, "em_step", None)
    if not callable(step):
        raise TypeError(
            f"em() needs a model with a closed-form M-step, a method em_step(x) -> float; "
            f"{type(model).__name__} has none. Fit it by SVI with pyrovae.fit instead."
        )
    history = EMHistory()
    compare = False  # whether the value may be compared with the previous one
    with tqdm(total=max_iter, disable=not progress, desc=desc, unit="iter") as bar:
        for _ in range(max_iter):
            value = float(step(x))
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the log-likelihood became {value} at EM iteration {history.iterations + 1};"
                    " check the data for NaN, infinite or constant columns."
                )
            history.log_likelihood.append(value)
            history.iterations += 1
            bar.update(1)
            bar.set_postfix_str(f"log-likelihood {value:.6f}")
            if callback is not None:
                callback(history)
            if compare and value - history.log_likelihood[-2] < tol:
                history.converged = True
                break
            compare = not getattr(model, "em_reset", False)
            if not compare:
                history.resets.append(history.iterations)
    return history


# ---- the Gaussian mixture's sufficient statistics and closed-form M-step -------------------


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
    model: GaussianMixture,
    x: torch.Tensor,
    posterior: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    centres: torch.Tensor,
    chunk_size: int | None = None,
) -> MixtureStatistics:
    """Stream rows x (N, D) through ``posterior(chunk) -> (score (B,), r^T (K, B))`` chunk by
    chunk and sum the statistics about ``centres``.

    With ``model.per_component()`` (full covariances, D > K) the centres are the K current
    means and the sums take (K, B, D) differences in the model's dtype, so the scatter about
    the new means does not cancel. Otherwise c is one point (1, D), the mixture's centre of
    mass, and the sums are float64 matrix products: r^T (x - c), r^T (x - c)^2 (diag,
    spherical), r^T vec((x - c)(x - c)^T) (full) and (x - c)^T (x - c) (tied, as
    sum_k r_nk = 1). The sums are kept in float64 whatever the model's dtype: float32 would
    round sums over millions of rows.
    """
    k, d, covariance = model.num_components, model.dim, model.covariance
    like = model.loc.detach().double()
    shapes = {"full": (k, d, d), "tied": (d, d)}
    total, nk, s1 = like.new_zeros(()), like.new_zeros(k), like.new_zeros(k, d)
    s2 = like.new_zeros(shapes.get(covariance, (k, d)))
    worst, worst_rows = like.new_full((k,), math.inf), like.new_zeros(k, d)
    per_component = model.per_component()
    for chunk in model.chunks(x, chunk_size):
        score, resp = posterior(chunk)
        total += score.double().sum()
        nk += resp.double().sum(-1)
        if per_component:
            diff = chunk - centres.unsqueeze(1)  # (K, B, D), the model's dtype
            weighted = resp.unsqueeze(-1) * diff
            s1 += weighted.sum(1).double()
            moments = (weighted.mT @ diff).double()
            s2 += moments if covariance == "full" else moments.sum(0)
        else:
            diff, resp = (chunk - centres).double(), resp.double()  # (B, D), (K, B)
            s1 += resp @ diff
            if covariance == "full":
                s2 += (resp @ (diff.unsqueeze(-1) * diff.unsqueeze(-2)).flatten(1)).view(k, d, d)
            else:
                s2 += diff.T @ diff if covariance == "tied" else resp @ diff.square()
        worst, index = torch.cat([worst, score.double()]).topk(k, largest=False)
        old = (index < k).unsqueeze(-1)
        rows = chunk[(index - k).clamp_min(0)].double()
        worst_rows = torch.where(old, worst_rows[index.clamp_max(k - 1)], rows)
    return MixtureStatistics(x.shape[0], total, nk, s1, s2, worst, worst_rows)


def mixture_m_step(
    model: GaussianMixture, stats: MixtureStatistics, centres: torch.Tensor
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


def fit_mixture(
    x: torch.Tensor,
    num_components: int,
    *,
    covariance: str = "full",
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    init: str = "kmeans++",
    seed: int | None = 0,
    chunk_size: int | None = None,
    prior: MixturePrior | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> tuple[GaussianMixture, EMHistory]:
    """Fit a :class:`~pyrovae.models.GaussianMixture` to rows x (N, D) by EM; keep the best
    of ``n_init`` runs.

    Each run seeds the means by greedy k-means++ (Arthur & Vassilvitskii 2007), assigns every
    row to its nearest seed, takes one M-step on those hard responsibilities, then iterates
    :func:`em` until the mean log-likelihood improves by less than ``tol`` (scikit-learn's
    rule). Run i draws its seeds with ``seed + i``. Data are streamed in chunks of
    ``chunk_size`` rows, so x may be larger than the accelerator's memory and stay on the CPU.

    Args:
        x: the data (N, D), finite.
        num_components: K <= N.
        covariance: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        n_init: independent runs; the one with the highest final log-likelihood is kept.
        max_iter, tol: per run, as in :func:`em` (scikit-learn's defaults, 100 and 1e-3).
        reg_covar: added to every covariance's diagonal (scikit-learn's default 1e-6).
        init: ``"kmeans++"`` or ``"random"`` (K distinct random rows as the seeds).
        seed: the first run's seed; None draws one from torch's global generator.
        chunk_size: rows per chunk (None: about 2^23 / (K D)).
        prior: a :class:`~pyrovae.models.mixture.MixturePrior` for MAP, or None.
        device, dtype: where and in what precision to fit (x's by default; float64 stays).
        progress: a tqdm bar per run with the current log-likelihood.

    Returns:
        (model, history) of the best run; ``history.restarts`` holds every run's final mean
        log-likelihood (plus log prior / N with a prior), in nats per example, at its final
        parameters.

    Raises:
        ValueError: x is not 2-D or has NaN or infinite entries, K > N, or a bad option.
    """
    from ..models.mixture import GaussianMixture, check_finite

    if x.dim() != 2:
        raise ValueError(f"x must be a matrix (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if not 1 <= num_components <= n:
        raise ValueError(
            f"num_components must be between 1 and N = {n} (one row per component at least), "
            f"got {num_components}"
        )
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be at least 1, got {n_init} and {max_iter}")
    check_finite(x)
    if seed is None:
        seed = int(torch.randint(2**62, ()))
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    best: tuple[GaussianMixture, EMHistory] | None = None
    finals = []
    for i in range(n_init):
        model = GaussianMixture(
            num_components, d, covariance, reg_covar=reg_covar, prior=prior, chunk_size=chunk_size
        ).to(device=device or x.device, dtype=dtype)
        model.initialize(x, init, seed=seed + i)
        history = em(
            model, x, max_iter=max_iter, tol=tol, progress=progress, desc=f"em {i + 1}/{n_init}"
        )
        finals.append(model.score(x) + float(model.log_prior()) / n)
        if best is None or finals[-1] > max(finals[:-1]):
            best = (model, history)
    model, history = best
    history.restarts = finals
    return model, history
