"""mixture_m_step against its closed forms written out independently, for every covariance
type, with and without each part of the prior, and with components that hold no point.

The oracle works from the rows x and responsibilities r directly (xbar_k, scatter about
xbar_k), not from the sums about reference points c_k that the M-step receives, so the
M-step's recentring is checked too. Everything is float64 and exact to 1e-10: no Monte Carlo.
Formulas: PRML eqs. 9.24-9.27 (maximum likelihood) and Fraley & Raftery (2007) (MAP), as the
M-step's docstring states them.
"""

from __future__ import annotations

import pytest
import torch

from pyrovae.models import GaussianMixture, MixturePrior
from pyrovae.models.mixture import COVARIANCE_TYPES
from pyrovae.models.mixture_stats import MixtureStatistics, mixture_m_step

K, D, N = 3, 2, 7
REG = 1e-3


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows x (N, D) and responsibilities r (N, K), rows of r summing to one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64) * 2
    r = torch.softmax(torch.randn(N, K, generator=g, dtype=torch.float64) * 2, -1)
    return x, r


def statistics(
    x: torch.Tensor, r: torch.Tensor, covariance: str, centres: torch.Tensor
) -> MixtureStatistics:
    """The sums mixture_statistics would hand over, about ``centres`` (K or 1, D)."""
    diff = x.unsqueeze(1) - centres  # (N, K, D)
    outer = diff.unsqueeze(-1) * diff.unsqueeze(-2)  # (N, K, D, D)
    s2 = torch.einsum("nk,nkij->kij", r, outer)
    if covariance == "tied":
        s2 = s2.sum(0)
    elif covariance in ("diag", "spherical"):
        s2 = s2.diagonal(dim1=-2, dim2=-1)
    scores = -x.square().sum(-1)  # any score: only the worst rows' order matters
    worst, index = scores.topk(K, largest=False)
    return MixtureStatistics(
        count=x.shape[0],
        total=scores.sum(),
        nk=r.sum(0),
        s1=torch.einsum("nk,nkd->kd", r, diff),
        s2=s2,
        worst=worst,
        worst_rows=x[index],
    )


def closed_form(x, r, covariance, prior: MixturePrior | None, reg: float):
    """(weights, means, covariances) by the textbook formulas, from x and r."""
    n, d = x.shape
    k = r.shape[1]
    nk = r.sum(0)
    xbar = (r.T @ x) / nk[:, None]
    centred = x.unsqueeze(1) - xbar  # (N, K, D)
    scatter = torch.einsum("nk,nki,nkj->kij", r, centred, centred)  # S_k (K, D, D)
    alpha = prior.concentration if prior else 1.0
    kappa = prior.mean_precision if prior else 0.0
    m0 = torch.zeros(d, dtype=x.dtype) + torch.as_tensor(prior.mean if prior else 0.0)
    nu = prior.degrees_of_freedom if prior else None
    psi = prior.covariance_scale if nu is not None else 0.0
    weights = (nk + alpha - 1) / (n + k * (alpha - 1))
    means = (nk[:, None] * xbar + kappa * m0) / (nk + kappa)[:, None]
    offset = xbar - m0
    b = scatter + (kappa * nk / (kappa + nk))[:, None, None] * torch.einsum(
        "ki,kj->kij", offset, offset
    )
    m = 1.0 if kappa > 0 else 0.0
    eye = torch.eye(d, dtype=x.dtype)
    if covariance == "full":
        denominator = nk + m + (nu + d + 1 if nu is not None else 0.0)
        cov = (psi * eye + b) / denominator[:, None, None] + reg * eye
    elif covariance == "tied":
        denominator = n + k * m + (nu + d + 1 if nu is not None else 0.0)
        cov = (psi * eye + b.sum(0)) / denominator + reg * eye
    elif covariance == "diag":
        denominator = nk + m + (nu + 2 if nu is not None else 0.0)
        cov = (psi + b.diagonal(dim1=-2, dim2=-1)) / denominator[:, None] + reg
    else:
        trace = b.diagonal(dim1=-2, dim2=-1).sum(-1)
        cov = (psi + trace) / ((nk + m) * d + (nu + 2 if nu is not None else 0.0)) + reg
    return weights, means, cov


PRIORS = {
    "none": None,
    "flat": MixturePrior(),
    "weights": MixturePrior(concentration=2.5),
    "means": MixturePrior(mean_precision=0.7, mean=[0.5, -1.0]),
    "covariances": MixturePrior(degrees_of_freedom=4.0, covariance_scale=1.5),
    "all": MixturePrior(3.0, 0.4, [1.0, 0.3], degrees_of_freedom=5.5, covariance_scale=0.8),
}


def mixture(covariance: str, prior: MixturePrior | None, reg: float = REG) -> GaussianMixture:
    return GaussianMixture(K, D, covariance, prior=prior, reg_covar=reg).double()


@pytest.mark.parametrize("prior", list(PRIORS))
@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
@pytest.mark.parametrize("per_component", [True, False], ids=["at-means", "at-one-point"])
def test_the_m_step_is_its_closed_form(covariance, prior, per_component):
    x, r = data()
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(K if per_component else 1, D, generator=g, dtype=torch.float64)
    stats = statistics(x, r, covariance, centres)
    weights, means, cov, reseeded = mixture_m_step(
        mixture(covariance, PRIORS[prior]), stats, centres
    )
    want = closed_form(x, r, covariance, PRIORS[prior], REG)
    for got, expected in zip((weights, means, cov), want, strict=True):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert reseeded == []


def test_a_flat_prior_gives_maximum_likelihood():
    x, r = data(2)
    centres = x.mean(0, keepdim=True)
    for covariance in COVARIANCE_TYPES:
        stats = statistics(x, r, covariance, centres)
        ml = mixture_m_step(mixture(covariance, None), stats, centres)
        flat = mixture_m_step(mixture(covariance, MixturePrior()), stats, centres)
        for a, b in zip(ml[:3], flat[:3], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_diagonal_scatter_rounded_below_zero_is_clamped():
    """One point per component: the diagonal scatter s2 - s1^2 / N_k is zero up to rounding,
    and a negative rounding must not leave a variance below reg_covar."""
    x = torch.tensor([[0.1, 1.3], [2.0, -0.7], [5.0, 3.3]], dtype=torch.float64)
    r = torch.eye(3, dtype=torch.float64)
    centres = torch.zeros(1, D, dtype=torch.float64)
    for covariance in ("diag", "spherical"):
        stats = statistics(x, r, covariance, centres)
        stats.s2 = stats.s2 - 1.0  # rounding of the sum of squares, much exaggerated
        _, _, cov, _ = mixture_m_step(
            GaussianMixture(3, D, covariance, reg_covar=REG).double(), stats, centres
        )
        torch.testing.assert_close(cov, torch.full_like(cov, REG), rtol=0, atol=0)


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_an_empty_component_moves_to_the_worst_row_with_the_average_covariance(covariance):
    x, r = data(3)
    r[:, 1] = 0.0  # component 1 holds no point
    r = r / r.sum(-1, keepdim=True)
    centres = torch.zeros(1, D, dtype=torch.float64)
    stats = statistics(x, r, covariance, centres)
    weights, means, cov, reseeded = mixture_m_step(mixture(covariance, None), stats, centres)
    assert reseeded == [1]
    torch.testing.assert_close(means[1], stats.worst_rows[0], rtol=0, atol=0)
    keep = [0, 2]
    nk = r.sum(0)
    raw = torch.stack([nk[0] / N, torch.tensor(1.0 / N, dtype=torch.float64), nk[2] / N])
    torch.testing.assert_close(weights, raw / raw.sum(), rtol=1e-12, atol=0)
    _, others_mu, others_cov = closed_form(x, r[:, keep], covariance, None, REG)
    torch.testing.assert_close(means[keep], others_mu, rtol=1e-10, atol=1e-12)
    if covariance == "tied":
        torch.testing.assert_close(cov, others_cov, rtol=1e-10, atol=1e-12)
    else:
        torch.testing.assert_close(cov[keep], others_cov, rtol=1e-10, atol=1e-12)
        share = nk[keep] / nk[keep].sum()
        average = (share.reshape((2,) + (1,) * (cov.dim() - 1)) * others_cov).sum(0)
        torch.testing.assert_close(cov[1], average, rtol=1e-10, atol=1e-12)


def test_two_empty_components_take_the_two_worst_rows_in_order():
    x, r = data(4)
    r[:, 0], r[:, 2] = 0.0, 0.0
    r[:, 1] = 1.0
    centres = torch.zeros(1, D, dtype=torch.float64)
    stats = statistics(x, r, "diag", centres)
    weights, means, _, reseeded = mixture_m_step(mixture("diag", None), stats, centres)
    assert reseeded == [0, 2]
    torch.testing.assert_close(means[[0, 2]], stats.worst_rows[:2], rtol=0, atol=0)
    expected = torch.tensor([1.0 / N, 1.0, 1.0 / N], dtype=torch.float64)
    torch.testing.assert_close(weights, expected / expected.sum(), rtol=1e-12, atol=0)


def test_a_component_at_the_emptiness_threshold_counts_as_empty():
    """N_k <= eps N is empty: exactly at eps N it is re-seeded, just above it is kept."""
    x, r = data(5)
    eps = torch.finfo(torch.float64).eps
    centres = torch.zeros(1, D, dtype=torch.float64)
    for nk, empty in ((eps * N, True), (4 * eps * N, False)):
        r2 = r.clone()
        r2[:, 1] = 0.0
        r2[0, 1] = nk
        stats = statistics(x, r2, "spherical", centres)
        assert stats.nk[1] == nk
        _, _, _, reseeded = mixture_m_step(mixture("spherical", None), stats, centres)
        assert reseeded == ([1] if empty else []), nk
