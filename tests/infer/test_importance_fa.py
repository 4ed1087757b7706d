"""Importance sampling against factor analysis, whose log p(x) is known in closed form."""

import pytest
import torch

from pyrovae.guides import ExactPosteriorGuide, LinearGaussianEncoder
from pyrovae.infer import log_marginal
from pyrovae.models import FactorAnalysis


@pytest.fixture
def fa():
    """A factor analyser (D = 6, L = 2) in float64, 12 rows from it, and their exact log p(x)."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    model = FactorAnalysis(6, 2)
    with torch.no_grad():
        model.W.copy_(2.0 * torch.randn(6, 2, generator=g))
        model.b.copy_(torch.randn(6, generator=g))
        model.set_noise_variance(0.05 + 0.2 * torch.rand(6, generator=g))
        z = torch.randn(12, 2, generator=g)
        x = z @ model.W.T + model.b + model.noise_variance.sqrt() * torch.randn(12, 6, generator=g)
        exact = model.log_prob(x)
    return model, x, exact


def imperfect_guide(model, x):
    """The exact posterior mean shifted by 0.3 sd, a diagonal covariance 1.5 times too wide."""
    guide = LinearGaussianEncoder(6, 2, full_covariance=False)
    mean, cov = model.posterior(x)
    sd = cov.diag().sqrt()
    with torch.no_grad():
        solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), mean).solution
        guide.linear.weight.copy_(solution[:-1].T)
        guide.linear.bias.copy_(solution[-1] + 0.3 * sd)
        target = 1.5 * sd - guide.min_scale  # softplus(raw) = target
        guide.raw_scale.copy_(target + torch.log(-torch.expm1(-target)))
    return guide


def test_exact_posterior_guide_gives_log_p_with_equal_weights(fa):
    model, x, exact = fa
    r = log_marginal(model, ExactPosteriorGuide(model), x, num_samples=200, progress=False)
    assert torch.allclose(r.log_likelihood, exact, atol=1e-9)
    assert torch.allclose(r.elbo, exact, atol=1e-9)  # ELBO = log p(x) exactly
    assert torch.allclose(r.ess, torch.full_like(r.ess, 200.0))
    assert (r.stderr < 1e-9).all()


def test_guide_importance_sampling_converges_within_three_standard_errors(fa):
    model, x, exact = fa
    r = log_marginal(model, imperfect_guide(model, x), x, num_samples=20000, progress=False)
    z = (r.log_likelihood - exact) / r.stderr
    # 12 examples, each within 3 SE; their mean within 3 SE of the mean.
    assert z.abs().max() < 3.5
    mean_z = (r.log_likelihood.mean() - exact.mean()) / r.mean_stderr()
    assert abs(mean_z) < 3
    assert (r.elbo < exact).all()  # the ELBO lies below log p(x)


def test_prior_proposal_is_unbiased_but_far_noisier_at_equal_k(fa):
    model, x, exact = fa
    guide = imperfect_guide(model, x)
    k = 2000
    by_guide = log_marginal(model, guide, x, num_samples=k, progress=False)
    by_prior = log_marginal(model, guide, x, num_samples=k, proposal="prior", progress=False)
    guide_error = (by_guide.log_likelihood - exact).abs().mean()
    prior_error = (by_prior.log_likelihood - exact).abs().mean()
    assert prior_error > 10 * guide_error
    assert by_prior.ess.mean() < by_guide.ess.mean() / 10
    # Unbiased for p(x): averaged over repeats, mean weights match p(x) (checked in log space
    # with many more draws, where the estimate's spread is small).
    many = log_marginal(model, guide, x[:3], num_samples=400000, proposal="prior", progress=False)
    assert ((many.log_likelihood - exact[:3]) / many.stderr).abs().max() < 4
