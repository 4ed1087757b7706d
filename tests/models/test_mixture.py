"""The Gaussian mixture as a Pyro program: exact densities by enumeration, checked against
closed forms, Pyro's own TraceEnum_ELBO and scikit-learn."""

import copy
import math

import numpy as np
import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.util import site_is_subsample
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import pyrovae
from pyrovae.distributions import CholeskyNormal, DiagonalNormal
from pyrovae.models import GaussianMixture, MixturePrior, empty_guide
from pyrovae.models.mixture import COVARIANCE_TYPES

pytestmark = pytest.mark.usefixtures("one_thread")


def sample_blobs(n=300, d=3, k=3, seed=0, dtype=torch.float64) -> torch.Tensor:
    """Rows (n, d) from k anisotropic, fairly separated Gaussian clusters."""
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(k, d, generator=g, dtype=torch.float64)
    mixing = torch.eye(d, dtype=torch.float64) + 0.4 * torch.randn(k, d, d, generator=g).double()
    z = torch.randint(k, (n,), generator=g)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (centres[z] + (mixing[z] @ noise.unsqueeze(-1)).squeeze(-1)).to(dtype)


def random_model(covariance: str, k=3, d=3, seed=0, prior=None) -> GaussianMixture:
    """A float64 mixture with random weights, means and covariances."""
    torch.manual_seed(seed)
    model = GaussianMixture(k, d, covariance, prior=prior).double()
    with torch.no_grad():
        model.logits.normal_()
        model.loc.normal_().mul_(3)
        raw = model.raw_tril if covariance in ("full", "tied") else model.log_variance
        raw.normal_().mul_(0.3)
    return model


def to_sklearn(model: GaussianMixture) -> SkGaussianMixture:
    """scikit-learn's GaussianMixture holding the same parameters."""
    sk = SkGaussianMixture(model.num_components, covariance_type=model.covariance)
    cov = model.covariances.detach().numpy()
    sk.weights_ = model.weights.detach().numpy()
    sk.means_ = model.loc.detach().numpy()
    sk.covariances_ = cov
    if model.covariance in ("full", "tied"):  # precision = P P^T with P = L^-T, upper
        tril = np.linalg.cholesky(cov)
        eye = np.eye(model.dim)
        sk.precisions_cholesky_ = np.swapaxes(np.linalg.solve(tril, eye), -1, -2)
    else:
        sk.precisions_cholesky_ = 1 / np.sqrt(cov)
    return sk


def is_site(site: dict) -> bool:
    """A sample statement, not a plate's subsample site."""
    return site["type"] == "sample" and not site_is_subsample(site)


class TestMixtureContract(PairContract):
    """GaussianMixture with its empty guide (tests/contract.py), one run per covariance type:
    z is enumerated, so the objective is TraceEnum_ELBO (Trace_ELBO would sample z) and the
    guide samples nothing; a float64 mixture with random parameters, against scipy's
    log p(x)."""

    variants = COVARIANCE_TYPES

    def make_pair(self, covariance):
        model = random_model(covariance)
        x = sample_blobs(30)
        w, mu, cov = (
            t.detach().numpy() for t in (model.weights, model.loc, model.covariance_matrix)
        )
        densities = [multivariate_normal(mu[j], cov[j]).logpdf(x.numpy()) for j in range(3)]
        exact = logsumexp([np.log(w[j]) + densities[j] for j in range(3)], axis=0)
        return Pair(model, empty_guide, (x,), "enum", torch.as_tensor(exact))

    def test_sites(self, variant):
        pair = self.make_pair(variant)
        model, guide, x = pair.model, pair.guide, pair.x
        model_trace = poutine.trace(model).get_trace(x)
        sites = [n for n, s in model_trace.nodes.items() if is_site(s)]
        assert sites == ["z", "x"] and model_trace.nodes["x"]["is_observed"]
        assert model_trace.nodes["z"]["infer"] == {"enumerate": "parallel"}
        for name in sites:
            assert [f.name for f in model_trace.nodes[name]["cond_indep_stack"]] == ["data"]
        guide_trace = poutine.trace(guide).get_trace(x)
        assert not [s for s in guide_trace.nodes.values() if is_site(s)]


@pytest.mark.parametrize("k, d", [(3, 3), (2, 5)])
@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_log_prob_is_the_logsumexp_and_the_enumerated_elbo(covariance, k, d):
    """log p(x) by hand (scipy), by the program enumerated (-TraceEnum_ELBO with an empty guide:
    no Monte Carlo, Pyro's oracle trick) and by log_marginal agree to 1e-8 in float64."""
    model = random_model(covariance, k=k, d=d)
    x = sample_blobs(200, d=d)
    w, mu, cov = (t.detach().numpy() for t in (model.weights, model.loc, model.covariance_matrix))
    by_hand = logsumexp(
        [np.log(w[j]) + multivariate_normal(mu[j], cov[j]).logpdf(x.numpy()) for j in range(k)],
        axis=0,
    )
    with torch.no_grad():
        ours = model.log_prob(x)
        enumerated = model.log_joint(x).logsumexp(0)
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, empty_guide, x)
        marginal = pyrovae.log_marginal(model, empty_guide, x, num_samples=2, progress=False)
    assert ours.shape == (200,) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), by_hand, rtol=0, atol=1e-8)
    torch.testing.assert_close(enumerated, ours, rtol=0, atol=1e-8)
    assert -loss == pytest.approx(ours.sum().item(), abs=1e-8)
    torch.testing.assert_close(marginal.log_likelihood.detach(), ours, rtol=0, atol=1e-8)
    assert model.score(x) == pytest.approx(ours.mean().item(), abs=1e-12)


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_responsibilities_and_predictions_match_scikit_learn(covariance):
    model = random_model(covariance)
    x = sample_blobs(300, seed=1)
    sk = to_sklearn(model)
    r = model.posterior(x, chunk_size=64)
    assert r.shape == (300, 3)
    torch.testing.assert_close(r.sum(-1), torch.ones(300, dtype=torch.float64))
    np.testing.assert_allclose(r.numpy(), sk.predict_proba(x.numpy()), rtol=0, atol=1e-10)
    labels = model.predict(x)
    assert labels.dtype == torch.long
    assert torch.equal(labels, r.argmax(-1))
    np.testing.assert_array_equal(labels.numpy(), sk.predict(x.numpy()))
    assert model.score(x) == pytest.approx(sk.score(x.numpy()), abs=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_bic_aic_and_parameter_count_match_scikit_learn(covariance):
    model = random_model(covariance, k=4, d=3)
    x = sample_blobs(250, seed=2)
    sk = to_sklearn(model)
    assert model.num_parameters() == sk._n_parameters()
    assert model.bic(x) == pytest.approx(sk.bic(x.numpy()), rel=1e-12)
    assert model.aic(x) == pytest.approx(sk.aic(x.numpy()), rel=1e-12)
    n, p = 250, model.num_parameters()
    assert model.bic(x) - model.aic(x) == pytest.approx(p * (math.log(n) - 2), rel=1e-12)


def test_sampled_assignments_follow_the_responsibilities():
    """infer_discrete at temperature 1 draws z_n ~ p(z_n | x_n): for one ambiguous row repeated
    M times, every component's frequency is within 4 binomial standard errors of r_k."""
    model = random_model("full")
    with torch.no_grad():
        between = (0.5 * (model.loc[0] + model.loc[1])).unsqueeze(0)
    r = model.posterior(between)[0]
    assert (r > 0.05).sum() >= 2, "the row should be ambiguous"
    m = 4000
    z = model.assign(between.expand(m, 3), temperature=1)
    freq = torch.bincount(z, minlength=3).double() / m
    stderr = (r * (1 - r) / m).sqrt()
    assert ((freq - r).abs() <= 4 * stderr + 1e-12).all()


def test_sample_draws_from_the_mixture():
    """z frequencies within 4 standard errors of pi; per component, the sample mean within
    4 standard errors of mu_k and the sample covariance within 10% of Sigma_k."""
    model = random_model("full")
    pyro.set_rng_seed(3)
    x, z = model.sample(20000)
    assert x.shape == (20000, 3) and z.shape == (20000,) and x.dtype == torch.float64
    pi = model.weights.detach()
    freq = torch.bincount(z, minlength=3).double() / 20000
    assert ((freq - pi).abs() <= 4 * (pi * (1 - pi) / 20000).sqrt()).all()
    cov = model.covariance_matrix.detach()
    for k in range(3):
        xk = x[z == k]
        stderr = (cov[k].diagonal() / len(xk)).sqrt()
        assert ((xk.mean(0) - model.loc[k].detach()).abs() <= 4 * stderr).all()
        torch.testing.assert_close(xk.T.cov(), cov[k], rtol=0.1, atol=0.1 * cov[k].abs().max())


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_set_parameters_round_trip(covariance):
    model = random_model(covariance)
    other = GaussianMixture(3, 3, covariance).double()
    other.set_parameters(model.weights, model.loc, model.covariances)
    for name in ("weights", "loc", "covariances", "covariance_matrix"):
        torch.testing.assert_close(getattr(other, name), getattr(model, name))


def test_set_parameters_refuses_a_covariance_that_is_not_positive_definite():
    model = GaussianMixture(2, 2, "full").double()
    singular = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]).double()
    with pytest.raises(ValueError, match=r"component\(s\) \[0\] is not positive definite"):
        model.set_parameters(covariances=singular)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(2, 2, "diag").set_parameters(covariances=torch.tensor([[1.0, 0], [1, 1]]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_diagonal_normal_is_the_independent_normal(dtype):
    """Its matrix-product log density equals Normal(...).to_event(1) under broadcasting
    (K, 1, D) against (N, D), as enumeration uses it, and expand copies nothing."""
    loc = (5 * torch.randn(4, 1, 3)).to(dtype)
    log_variance = torch.randn(4, 1, 3).to(dtype)
    value = (5 * torch.randn(50, 3)).to(dtype)
    ours = DiagonalNormal(loc, log_variance, centre=loc.mean((0, 1))).expand((4, 50))
    reference = pyro.distributions.Normal(loc, (0.5 * log_variance).exp()).to_event(1)
    assert ours.batch_shape == (4, 50) and ours.event_shape == (3,)
    assert ours.loc.shape == (4, 1, 3)
    tol = 1e-10 if dtype == torch.float64 else 3e-4  # float32 Normal: 2e-7 relative
    torch.testing.assert_close(ours.log_prob(value), reference.log_prob(value), rtol=0, atol=tol)
    assert ours.rsample((2,)).shape == (2, 4, 50, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "factors, d", [((), 4), ((5, 1), 4), ((2, 1), 6)], ids=["shared", "D<=K", "D>K"]
)
def test_cholesky_normal_is_the_multivariate_normal(factors, d, dtype):
    """Each of its three ways (one shared factor, vec(v v^T) products, differences) equals
    MultivariateNormal under the broadcasting that enumeration uses."""
    k = 5 if factors == () else factors[0]
    loc = (5 * torch.randn(k, 1, d)).double()
    tril = torch.linalg.cholesky(torch.eye(d) + (a := 0.5 * torch.randn(*factors, d, d)) @ a.mT)
    tril = tril.double()
    value = (5 * torch.randn(40, d)).double()
    centre = loc.mean((0, 1))
    ours = CholeskyNormal(loc.to(dtype), tril.to(dtype), centre.to(dtype)).expand((k, 40))
    reference = pyro.distributions.MultivariateNormal(loc, scale_tril=tril)
    assert ours.batch_shape == (k, 40) and ours.event_shape == (d,)
    expected = reference.log_prob(value).to(dtype)
    tol = 1e-10 if dtype == torch.float64 else 3e-4
    torch.testing.assert_close(ours.log_prob(value.to(dtype)), expected, rtol=0, atol=tol)
    assert ours.rsample((2,)).shape == (2, k, 40, d)


def test_constructor_and_prior_validation():
    with pytest.raises(ValueError, match="covariance must be one of"):
        GaussianMixture(2, 2, "banded")
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(0, 2)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(2, 2, reg_covar=-1.0)
    with pytest.raises(ValueError, match="concentration"):
        MixturePrior(concentration=0.5)
    with pytest.raises(ValueError, match="covariance_scale"):
        MixturePrior(covariance_scale=0.0)


def test_the_prior_factor_is_scaled_to_the_minibatch():
    """On B of N rows the program adds (B / N) log p(theta), so minibatch losses divided by B
    estimate the full MAP objective per example."""
    prior = MixturePrior(concentration=2.0, mean_precision=1.0, degrees_of_freedom=5.0)
    model = random_model("full", prior=prior)
    model.num_data = 1000
    trace = poutine.trace(model).get_trace(sample_blobs(100))
    factor = trace.nodes["prior"]["fn"].log_prob(trace.nodes["prior"]["value"])
    assert factor.item() == pytest.approx(0.1 * model.log_prior().item(), rel=1e-12)
    assert [f.name for f in trace.nodes["prior"]["cond_indep_stack"]] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_everything_runs_on_cuda(covariance):
    """x may stay on the CPU; chunks move to the model's device."""
    x = sample_blobs(500)
    model = GaussianMixture(3, 3, covariance).double().cuda().initialize(x, seed=0)
    values = [model.em_step(x, chunk_size=128) for _ in range(5)]
    assert np.diff(values).min() >= -1e-10
    cpu = copy.deepcopy(model).cpu()
    torch.testing.assert_close(model.log_prob(x).cpu(), cpu.log_prob(x))
    assert model.posterior(x).device.type == "cuda"
    assert model.predict(x.cuda()).device.type == "cuda"
    assert model.sample(10)[0].device.type == "cuda"
