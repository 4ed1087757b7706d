"""EM's steps for :class:`~pyrovae.models.GaussianMixture`.

EM (Dempster, Laird & Rubin 1977; Bishop, PRML section 9.2). The E-step takes the
responsibilities r_nk = p(z_n = k | x_n) from the program's parallel enumeration of z,
written out once per iteration in closed form
(:class:`~pyrovae.models.mixture_density.MixtureLogJoint`, tested against the traced program; a
subclass that redefines the program is traced instead); the M-step is closed form in the sufficient
statistics N_k = sum_n r_nk, sum_n r_nk x_n and sum_n r_nk x_n x_n^T, accumulated chunk by chunk:

    pi_k = N_k / N,   mu_k = sum_n r_nk x_n / N_k,
    Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I

(tied: the N_k-weighted average of those scatters; diag: their diagonals; spherical: the
mean of the diagonal). ``reg_covar`` (scikit-learn's default 1e-6) keeps every covariance
positive definite. With a :class:`~pyrovae.models.MixturePrior` the M-step is the MAP
update instead (Fraley & Raftery, "Bayesian regularization for normal mixture estimation",
J. Classif. 24, 2007), and the program carries the same log prior as a ``pyro.factor``, so
SVI finds the same mode.
The sums and the M-step are :mod:`pyrovae.models.mixture_stats`; EM from k-means++ seeds
(:mod:`pyrovae.kmeans`) with restarts is :func:`pyrovae.models.fit_mixture`. Assignments
(:meth:`~pyrovae.models.GaussianMixture.assign`) come from the same closed-form posterior
r_nk. This module imports nothing from :mod:`pyrovae.infer`.

:class:`MixtureEM` is a mixin of :class:`~pyrovae.models.GaussianMixture`; it reads the
mixture's parameters (``logits``, ``loc``, ``scale_tril`` or ``log_variance``) and its program
(``log_joint``, ``closed_form``), and writes the parameters back through ``set_parameters``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import pyro
import torch

from ..kmeans import kmeans_plusplus, squared_distances
from .mixture_density import MixtureLogJoint
from .mixture_stats import Expectation, MixtureStatistics, mixture_m_step, mixture_statistics

#: The mixture a step returns: the class it was called on.
Mixture = TypeVar("Mixture", bound="MixtureEM")


class MixtureEM:
    """E-step, M-step and initialisation of a Gaussian mixture (a mixin of
    :class:`~pyrovae.models.GaussianMixture`)."""

    def per_component(self) -> bool:
        """Whether the M-step's sums are centred at each mean, by (K, B, D) differences (full
        covariances with D > K), rather than at one point by float64 matrix products."""
        return self.covariance == "full" and self.dim > self.num_components

    def _maximise(self, stats: MixtureStatistics, centres: torch.Tensor) -> None:
        weights, means, covariances, self.reseeded = mixture_m_step(self, stats, centres)
        self.em_reset = bool(self.reseeded)
        self.set_parameters(weights, means, covariances)

    def log_joint_function(self) -> Callable[..., torch.Tensor]:
        """A function chunk (B, D) [, centred, square] -> log p(x_n, z_n = k) (K, B) at the
        current parameters, not differentiable:
        :class:`~pyrovae.models.mixture_density.MixtureLogJoint` about the centre of mass where
        :meth:`~pyrovae.models.GaussianMixture.closed_form` allows it (build it again after the
        parameters change), else the program's
        :meth:`~pyrovae.models.GaussianMixture.log_joint`."""
        if not self.closed_form():

            def enumerated(chunk: torch.Tensor, *_: Any) -> torch.Tensor:
                with pyro.validation_enabled(False):  # callers check x; this is the hot path
                    return self.log_joint(chunk)

            return enumerated
        centre = self._centre()
        spread = self.scale_tril if self.covariance in ("full", "tied") else self.log_variance
        dtype = self.compute_dtype
        density = MixtureLogJoint(
            self.covariance, self.logits.log_softmax(-1), self.loc, spread.detach(), centre, dtype
        )

        def closed(
            chunk: torch.Tensor,
            centred: torch.Tensor | None = None,
            square: torch.Tensor | None = None,
        ) -> torch.Tensor:
            if centred is None:
                centred, square = (chunk - centre).to(dtype), None
            return density(centred, square).to(chunk.dtype)

        return closed

    def expectation_function(self) -> Expectation:
        """The E-step at the current parameters: a function chunk (B, D) [, centred, square]
        -> (log p(x_n) (B,), r^T (K, B)) from :meth:`log_joint_function` (``centred`` =
        chunk - centre of mass in ``compute_dtype`` and ``square`` its square, where the
        caller has them: :func:`~pyrovae.models.mixture_stats.mixture_statistics`).

        One exp pass: r_nk = exp(a_nk) / sum_j exp(a_nj) with a = log-joint minus its maximum.
        Where a_nk < log(sqrt(tiny)) (r_nk below 1e-154 in float64, 1e-19 in float32) r_nk is
        set to exactly 0: its share of every sum is below rounding (the largest term is 1),
        and kept, it would make exp and the statistics' products produce subnormal numbers,
        which the CPU handles 10 to 100 times slower (in MNIST's 784 dimensions, 70% of all
        r_nk are that small).
        """
        log_joint = self.log_joint_function()

        def expectation(chunk: torch.Tensor, *features: Any) -> tuple[torch.Tensor, torch.Tensor]:
            joint = log_joint(chunk, *features)  # (K, B)
            peak = joint.amax(0)
            floor = 0.5 * math.log(torch.finfo(joint.dtype).tiny)
            shifted = joint.sub_(peak)
            kept = shifted > floor
            weights = shifted.clamp_min_(floor).exp_().mul_(kept)
            total = weights.sum(0)
            return peak + total.log(), weights.div_(total)

        return expectation

    @torch.no_grad()
    def em_step(self, x: torch.Tensor, chunk_size: int | None = None) -> float:
        """One EM iteration on rows x (N, D); returns the mean log p(x_n) before the update
        (with a prior: (sum_n log p(x_n) + log p(theta)) / N, the MAP objective per example).

        E-step: r_nk from :meth:`expectation_function` (the program's enumeration, in
        closed form), chunk by chunk; the M-step as in the module docstring. Memory is
        O(K D^2 + K B D) for chunks of B rows whatever N is, and x may stay on the CPU while
        the model is on a GPU. A component whose responsibilities sum to less than eps N (it
        explains no point) is re-seeded at a worst-explained row (lowest log p(x_n)), with
        weight 1/N and the average covariance of the others; ``reseeded`` lists it and
        ``em_reset`` tells :func:`~pyrovae.infer.em` that this one step need not increase
        the log-likelihood.

        Raises:
            ValueError: x has NaN or infinite entries (nothing is updated), or a covariance
                came out singular (raise ``reg_covar``).
        """
        check_shape(x, self.dim)
        centres = self.loc.detach().clone() if self.per_component() else self._centre()[None]
        try:
            expectation = self.expectation_function()
            stats = mixture_statistics(self, x, expectation, centres, chunk_size)
        except ValueError:  # Pyro's validation refused a value: say which rows, if NaN
            check_finite(x)
            raise
        value = float(stats.total + self.log_prior()) / stats.count
        if not math.isfinite(value):  # NaN without validation; no pass over x until then
            check_finite(x)
            return value  # a non-finite model: em() reports it, parameters untouched
        self._maximise(stats, centres)
        return value

    @torch.no_grad()
    def initialize(
        self: Mixture, x: torch.Tensor, init: str = "kmeans++", *, seed: int | None = None
    ) -> Mixture:
        """Initial parameters from rows x (N, D): centres by greedy k-means++ (``"kmeans++"``,
        Arthur & Vassilvitskii 2007) or K distinct random rows (``"random"``), each row
        assigned to its nearest centre, then one M-step on those hard responsibilities.
        ``seed`` fixes the draw. Returns self.

        Raises:
            ValueError: x is not (N, D), has NaN or infinite entries, or K > N.
        """
        check_shape(x, self.dim)
        n, k = x.shape[0], self.num_components
        if k > n:
            raise ValueError(f"{k} components need at least {k} rows, got N = {n}; use fewer")
        check_finite(x)
        generator = torch.Generator(device=self.loc.device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ())))
        if init == "kmeans++":
            centres, _ = kmeans_plusplus(
                x,
                k,
                generator=generator,
                chunk_size=self.chunk_size,
                device=self.loc.device,
                dtype=self.loc.dtype,
            )
        elif init == "random":
            index = torch.randperm(n, generator=generator, device=self.loc.device)[:k]
            centres = x[index.to(x.device)].to(self.loc)
        else:
            raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")

        def nearest(chunk: torch.Tensor, *_: Any) -> tuple[torch.Tensor, torch.Tensor]:
            distances = squared_distances(chunk, centres)  # (K, B)
            closest, label = distances.min(0)
            labels = torch.arange(k, device=chunk.device).unsqueeze(-1)
            return -closest, (labels == label).to(chunk.dtype)

        reference = centres if self.per_component() else centres.mean(0, keepdim=True)
        self._maximise(mixture_statistics(self, x, nearest, reference), reference)
        return self


def check_shape(x: torch.Tensor, dim: int) -> None:
    """Raise ValueError unless x is a matrix (N, dim)."""
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")


def check_finite(x: torch.Tensor) -> None:
    """Raise ValueError naming the first rows of x (N, D) with NaN or infinite entries.

    One reduction first: a NaN or an infinity makes the sum NaN or infinite, so a finite sum
    clears x without the (N, D) mask; only a non-finite sum (or finite rows whose sum
    overflows) takes the row-by-row search."""
    if x.numel() == 0 or torch.isfinite(x.sum(dtype=torch.float64)):
        return
    bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(-1).nonzero().flatten()
    if len(bad):
        rows = bad[:5].tolist()
        raise ValueError(
            f"x has NaN or infinite entries in {len(bad)} row(s), first {rows}; drop or impute "
            "them before fitting"
        )
