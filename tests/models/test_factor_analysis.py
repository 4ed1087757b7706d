"""Factor analysis / PPCA: the exact oracle, checked against closed forms and scikit-learn."""

import math

import pytest
import torch
from contract import Pair, PairContract
from fa_data import sample_fa
from pyro import poutine
from pyro.infer import Trace_ELBO
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis
from torch.distributions import MultivariateNormal, kl_divergence

import pyrovae
from pyrovae.guides import ExactPosteriorGuide, LinearGaussianEncoder
from pyrovae.models import FactorAnalysis

pytestmark = pytest.mark.usefixtures("one_thread")


def random_model(d=7, latent=3, isotropic=False) -> FactorAnalysis:
    model = FactorAnalysis(d, latent, isotropic=isotropic).double()
    with torch.no_grad():
        model.W.normal_()
        model.b.normal_()
        model.log_noise.uniform_(-1.0, 1.0)
    return model


def log_weights(model, guide, x) -> torch.Tensor:
    """log p(x_n, z_n) - log q(z_n | x_n) per example (N,), one draw z_n ~ q(z | x_n)."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()

    def total(trace):
        return sum(s["log_prob"] for s in trace.nodes.values() if s["type"] == "sample")

    return total(model_trace) - total(guide_trace)


class TestFactorAnalysisContract(PairContract):
    def make_pair(self):
        x = sample_fa(64, dtype=torch.float32)
        return Pair(FactorAnalysis(8, 2), LinearGaussianEncoder(8, 2), (x,))


class TestProbabilisticPCAContract(PairContract):
    def make_pair(self):
        x = sample_fa(64, dtype=torch.float32)
        model = FactorAnalysis(8, 2, isotropic=True)
        return Pair(model, LinearGaussianEncoder(8, 2, full_covariance=False), (x,))


class TestFactorAnalysisWithItsExactPosteriorContract(PairContract):
    """q(z | x) = p(z | x): every importance weight is p(x), the Gaussian marginal, and the
    guide reads the model's parameters (it has none of its own)."""

    def make_pair(self):
        model = random_model(d=8, latent=2)
        x = sample_fa(40)
        covariance = model.W @ model.W.T + torch.diag(model.noise_variance)
        with torch.no_grad():
            exact = MultivariateNormal(model.b, covariance).log_prob(x)
        return Pair(model, ExactPosteriorGuide(model), (x,), exact=exact)


@pytest.mark.parametrize("isotropic", [False, True])
def test_log_prob_is_the_gaussian_marginal(isotropic):
    model = random_model(isotropic=isotropic)
    x = torch.randn(50, 7, dtype=torch.float64) * 3
    psi = model.noise_variance
    covariance = model.W @ model.W.T + torch.diag(psi)
    expected = MultivariateNormal(model.b, covariance).log_prob(x)
    with torch.no_grad():
        actual = model.log_prob(x)
    assert actual.shape == (50,) and actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)
    if isotropic:
        assert model.log_noise.shape == () and torch.all(psi == psi[0])


def test_log_prob_matches_scikit_learn():
    x = sample_fa(500, seed=1)
    fa = SkFactorAnalysis(n_components=2, random_state=0).fit(x.numpy())
    model = FactorAnalysis(8, 2).double()
    with torch.no_grad():
        model.W.copy_(torch.from_numpy(fa.components_.T))
        model.b.copy_(torch.from_numpy(fa.mean_))
    model.set_noise_variance(torch.from_numpy(fa.noise_variance_))
    with torch.no_grad():
        assert model.log_prob(x).mean().item() == pytest.approx(fa.score(x.numpy()), abs=1e-8)


@pytest.mark.parametrize("isotropic", [False, True])
def test_posterior_is_gaussian_conditioning_of_the_joint(isotropic):
    """[z; x] ~ N([0; b], [[I, W^T], [W, C]]) so z | x ~ N(W^T C^-1 (x - b), I - W^T C^-1 W)."""
    model = random_model(isotropic=isotropic)
    x = torch.randn(20, 7, dtype=torch.float64)
    with torch.no_grad():
        w = model.W
        c = w @ w.T + torch.diag(model.noise_variance)
        gain = torch.linalg.solve(c, w).T  # W^T C^-1: (L, D)
        mean, covariance = model.posterior(x)
    torch.testing.assert_close(mean, (x - model.b) @ gain.T, rtol=0, atol=1e-10)
    torch.testing.assert_close(covariance, torch.eye(3).double() - gain @ w, rtol=0, atol=1e-10)


@pytest.mark.parametrize("isotropic", [False, True])
def test_exact_posterior_guide_makes_the_elbo_exact(isotropic):
    model = random_model(isotropic=isotropic)
    guide = ExactPosteriorGuide(model)
    assert not list(guide.parameters())
    x = torch.randn(30, 7, dtype=torch.float64)
    with torch.no_grad():
        exact = model.log_prob(x)
    # Zero variance: every single draw gives -log p(x) exactly.
    for _ in range(3):
        assert Trace_ELBO().loss(model, guide, x) == pytest.approx(-exact.sum().item(), abs=1e-8)
        torch.testing.assert_close(log_weights(model, guide, x), exact, rtol=0, atol=1e-9)


def test_exact_posterior_guide_gives_the_gradient_of_log_p():
    model = random_model()
    x = torch.randn(30, 7, dtype=torch.float64)
    Trace_ELBO().differentiable_loss(model, ExactPosteriorGuide(model), x).backward()
    from_elbo = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (-model.log_prob(x).sum()).backward()
    for a, b in zip(from_elbo, model.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad, rtol=1e-8, atol=1e-8)


def test_linear_guide_contains_the_exact_posterior():
    """A = Sigma W^T Psi^-1, c = -A b, S = Sigma: every log weight is then log p(x)."""
    model = random_model()
    guide = LinearGaussianEncoder(7, 3).double()
    with torch.no_grad():
        _, sigma = model.posterior(torch.zeros(1, 7, dtype=torch.float64))
        gain = sigma @ (model.W / model.noise_variance.unsqueeze(-1)).T  # (L, D)
        guide.linear.weight.copy_(gain)
        guide.linear.bias.copy_(-gain @ model.b)
        tril = torch.linalg.cholesky(sigma)
        diagonal = tril.diagonal() - guide.min_scale
        raw = tril.tril(-1) + torch.diag(diagonal + torch.log(-torch.expm1(-diagonal)))
        guide.raw_scale.copy_(raw)
        x = torch.randn(40, 7, dtype=torch.float64)
        torch.testing.assert_close(
            log_weights(model, guide, x), model.log_prob(x), atol=1e-9, rtol=0
        )


@pytest.mark.parametrize("full_covariance", [True, False])
def test_encode_gives_the_guide_mean_and_marginal_scale(full_covariance):
    guide = LinearGaussianEncoder(7, 3, full_covariance=full_covariance)
    with torch.no_grad():
        guide.raw_scale.normal_()
    x = torch.randn(10, 7)
    q = poutine.trace(guide).get_trace(x).nodes["z"]["fn"]
    loc, scale = guide.encode(x)
    assert loc.shape == scale.shape == (10, 3)
    torch.testing.assert_close(loc, q.mean)
    torch.testing.assert_close(scale, q.stddev)


def test_linear_guide_elbo_lies_below_log_p_by_the_kl():
    """ELBO = log p(x) - KL(q || p(z|x)) < log p(x); the MC estimate is within 4 standard errors
    of that closed form and more than 3 below log p(x)."""
    model = random_model()
    guide = LinearGaussianEncoder(7, 3).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    particles = 4000
    with torch.no_grad():
        # Each copy of the batch draws its own z: (particles, N) log weights.
        weights = log_weights(model, guide, x.repeat(particles, 1)).reshape(particles, 5)
        per_particle = weights.sum(1)  # one ELBO estimate of the whole batch per particle
        estimate = per_particle.mean()
        standard_error = per_particle.std() / math.sqrt(particles)
        exact = model.log_prob(x).sum()
        mean, sigma = model.posterior(x)
        q = MultivariateNormal(guide.linear(x), scale_tril=guide.scale_tril)
        kl = kl_divergence(q, MultivariateNormal(mean, sigma)).sum()
    assert exact - estimate > 3 * standard_error
    assert abs(estimate - (exact - kl)) < 4 * standard_error


def test_ppca_initialization_is_the_maximum_likelihood():
    """sklearn's PCA divides by N - 1, so its covariance is c = N / (N - 1) times the ML one;
    at the PPCA maximum tr(C^-1 S) = D, so the gap is exactly D/2 (log c + 1/c - 1)."""
    x = sample_fa()
    n, d = x.shape
    model = FactorAnalysis(d, 2, isotropic=True).double().initialize(x)
    c = n / (n - 1)
    gap = d / 2 * (math.log(c) + 1 / c - 1)
    pca_score = PCA(n_components=2).fit(x.numpy()).score(x.numpy())
    with torch.no_grad():
        assert model.log_prob(x).mean().item() - pca_score == pytest.approx(gap, abs=1e-10)


def test_factor_analysis_initialization_is_sensible():
    x = sample_fa()
    model = FactorAnalysis(8, 2).double().initialize(x)
    sklearn_score = SkFactorAnalysis(n_components=2).fit(x.numpy()).score(x.numpy())
    with torch.no_grad():
        torch.testing.assert_close(model.b, x.mean(0))
        assert (model.noise_variance > 0).all()
        assert sklearn_score - 0.5 < model.log_prob(x).mean().item() <= sklearn_score + 1e-6


def fit_by_svi(epochs: int, lr: float) -> tuple[float, float]:
    """(sklearn's maximum log-likelihood, ours after SVI), nats per example, from a random start."""
    x = sample_fa()
    sklearn_score = SkFactorAnalysis(n_components=2, tol=1e-8, svd_method="lapack").fit(x.numpy())
    model, guide = FactorAnalysis(8, 2).double(), LinearGaussianEncoder(8, 2).double()
    pyrovae.fit(model, guide, x, epochs=epochs, lr=lr, seed=0, progress=False)
    with torch.no_grad():
        return sklearn_score.score(x.numpy()), model.log_prob(x).mean().item()


def test_svi_approaches_the_maximum_likelihood():
    best, ours = fit_by_svi(epochs=30, lr=0.03)  # gap 0.017 measured
    assert best - 0.05 < ours <= best + 1e-9


@pytest.mark.slow
def test_svi_reaches_the_maximum_likelihood():
    best, ours = fit_by_svi(epochs=200, lr=0.005)  # gap 0.0017 measured
    assert best - 0.005 < ours <= best + 1e-9
