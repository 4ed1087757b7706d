"""EM for the Gaussian mixture with restarts: :func:`~pyrovae.models.fit_mixture`, the counterpart
of scikit-learn's ``GaussianMixture.fit``.

Each run seeds a :class:`~pyrovae.models.GaussianMixture` by k-means++
(:meth:`~pyrovae.models.mixture_steps.MixtureEM.initialize`), then iterates its
:meth:`~pyrovae.models.mixture_steps.MixtureEM.em_step` (E-step by enumerating the program,
closed-form M-step of :mod:`pyrovae.models.mixture_stats`) under the generic driver
:func:`pyrovae.infer.em`, and the best of ``n_init`` runs is kept.

Layering: this module's import of :mod:`pyrovae.infer.em` (:func:`~pyrovae.infer.em`,
:class:`~pyrovae.infer.em.EMHistory`) is the one edge from :mod:`pyrovae.models` to
:mod:`pyrovae.infer` that the package allows (``tests/test_imports.py`` checks it): fitting
a model by a generic inference routine sits above both. :mod:`pyrovae.infer` imports nothing
from :mod:`pyrovae.models`, and no other module of :mod:`pyrovae.models` imports
:mod:`pyrovae.infer`.
"""

from __future__ import annotations

import torch

from ..infer.em import EMHistory, em
from ..ranks import shared_seed
from .mixture import GaussianMixture, MixturePrior
from .mixture_steps import check_finite


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
    compute_dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> tuple[GaussianMixture, EMHistory]:
    """Fit a :class:`~pyrovae.models.GaussianMixture` to rows x (N, D) by EM; keep the best
    of ``n_init`` runs.

    Each run seeds the means by greedy k-means++ (Arthur & Vassilvitskii 2007), assigns every
    row to its nearest seed, takes one M-step on those hard responsibilities, then iterates
    :func:`~pyrovae.infer.em` until the mean log-likelihood improves by less than ``tol``
    (scikit-learn's rule). Run i draws its seeds with ``seed + i``. Data are streamed in chunks of
    ``chunk_size`` rows, so x may be larger than the accelerator's memory and stay on the CPU.

    Under torch.distributed (e.g. ``torchrun``) call it on every rank with the same x: the
    k-means++ seeds are drawn from all rows alike on every rank (the same seeds as one
    process), each rank streams its contiguous share of the rows through every E-step and
    the sufficient statistics are all-reduced, so every rank takes the same M-steps, reaches
    the same fit as one process (to rounding) and returns it. Where two restarts reach one
    optimum with the components in different orders, their log-likelihoods tie to rounding,
    and the ranks may keep the other order than one process: the same mixture, relabelled.

    Args:
        x: the data (N, D), finite.
        num_components: K <= N.
        covariance: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        n_init: independent runs; the one with the highest final log-likelihood is kept.
        max_iter, tol: per run, as in :func:`~pyrovae.infer.em` (scikit-learn's defaults, 100 and
        1e-3).
        reg_covar: added to every covariance's diagonal (scikit-learn's default 1e-6).
        init: ``"kmeans++"`` or ``"random"`` (K distinct random rows as the seeds).
        seed: the first run's seed; None draws one from torch's global generator.
        chunk_size: rows per chunk (None: :meth:`GaussianMixture.chunk_rows`).
        prior: a :class:`~pyrovae.models.mixture.MixturePrior` for MAP, or None.
        device, dtype: where and in what precision to fit (x's by default; float64 stays).
        compute_dtype: the precision of the E-step's products and per-chunk sums
            (:class:`~pyrovae.models.GaussianMixture`): float64 by default, float32 about
            twice as fast on wide rows at about 1e-5 relative in the log-likelihood.
        progress: a tqdm bar per run with the current log-likelihood.

    Returns:
        (model, history) of the best run; ``history.restarts`` holds every run's final mean
        log-likelihood (plus log prior / N with a prior), in nats per example, at its final
        parameters.

    Raises:
        ValueError: x is not 2-D or has NaN or infinite entries, K > N, or a bad option.
    """
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
        seed = shared_seed(int(torch.randint(2**62, ())))  # under torchrun: rank 0's
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    best: tuple[GaussianMixture, EMHistory] | None = None
    finals = []
    for i in range(n_init):
        model = GaussianMixture(
            num_components,
            d,
            covariance,
            reg_covar=reg_covar,
            prior=prior,
            chunk_size=chunk_size,
            compute_dtype=compute_dtype,
        ).to(device=device or x.device, dtype=dtype)
        model.initialize(x, init, seed=seed + i)
        history = em(
            model, x, max_iter=max_iter, tol=tol, progress=progress, desc=f"em {i + 1}/{n_init}"
        )
        finals.append(model.score(x) + float(model.log_prior().detach()) / n)
        if best is None or finals[-1] > max(finals[:-1]):
            best = (model, history)
    model, history = best
    history.restarts = finals
    return model, history


__all__ = ["fit_mixture"]
