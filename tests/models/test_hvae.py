"""The two-layer VAE and its bottom-up guide, against closed forms on linear-Gaussian layers.

With no hidden layers (``hidden_dims=()``), a Gaussian likelihood and the scale halves of
the networks' weights set to zero, every layer is linear with a constant noise:

    z2 ~ N(0, I),  z1 | z2 ~ N(A z2 + b, S1),  x | z1 ~ N(C z1 + d, Sx),

so x is Gaussian, N(C b + d, C (A A^T + S1) C^T + Sx), and the ELBO of a linear guide is a
sum of Gaussian expectations. With one-dimensional z1 and z2 the guide's family holds the
exact posterior, p(z1 | x) p(z2 | z1) (z2 is independent of x given z1), and then every
importance weight is p(x) itself: the pair contract's exact oracle.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro.infer import Trace_ELBO
from sklearn.datasets import load_digits
from torch.distributions import MultivariateNormal

from pyrovae import log_marginal
from pyrovae.guides.hierarchical import HierarchicalVAEGuide
from pyrovae.models.hvae import HierarchicalVAE

MIN_SCALE = 1e-4  # both programs' default floor on their standard deviations


def digits(n: int = 64) -> torch.Tensor:
    return torch.tensor(load_digits().data[:n] / 16, dtype=torch.float32)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.expm1(y))


def set_gaussian_layer(
    linear: torch.nn.Linear, weight: torch.Tensor, bias: torch.Tensor, std: torch.Tensor
) -> None:
    """A Linear(in, 2 out) read by ``gaussian_head`` as N(weight @ v + bias, diag std^2)."""
    out = len(bias)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:out] = weight
        linear.bias[:out] = bias
        linear.bias[out:] = inverse_softplus(std - MIN_SCALE)


def linear_pair(
    d: int, latent: int, top: int, seed: int
) -> tuple[HierarchicalVAE, HierarchicalVAEGuide]:
    """A float64 linear-Gaussian pair with random layers (constant noise scales)."""
    torch.manual_seed(seed)
    model = HierarchicalVAE(d, latent, top, hidden_dims=(), likelihood="gaussian").double()
    guide = HierarchicalVAEGuide(d, latent, top, hidden_dims=()).double()
    randn = lambda *shape: torch.randn(*shape, dtype=torch.float64)  # noqa: E731
    uniform = lambda *shape: 0.5 + torch.rand(*shape, dtype=torch.float64)  # noqa: E731
    set_gaussian_layer(model.prior_net[0], randn(latent, top), randn(latent), uniform(latent))
    set_gaussian_layer(guide.bottom[0], randn(latent, d) / d, randn(latent), uniform(latent))
    set_gaussian_layer(guide.top[0], randn(top, latent), randn(top), uniform(top))
    with torch.no_grad():
        model.decoder[0].weight.normal_()
        model.decoder[0].bias.normal_()
        model.likelihood.raw_scale.copy_(inverse_softplus(uniform(d) - 1e-2))
    return model, guide


def layers(model: HierarchicalVAE) -> dict[str, torch.Tensor]:
    """A, b, S1 (covariance of z1 | z2), C, d, Sx (covariance of x | z1) of a linear model."""
    weight, bias = model.prior_net[0].weight, model.prior_net[0].bias
    latent = model.latent_dim
    std1 = torch.nn.functional.softplus(bias[latent:]) + MIN_SCALE
    stdx = torch.nn.functional.softplus(model.likelihood.raw_scale) + model.likelihood.min_scale
    return {
        "A": weight[:latent],
        "b": bias[:latent],
        "S1": torch.diag(std1**2),
        "C": model.decoder[0].weight,
        "d": model.decoder[0].bias,
        "Sx": torch.diag(stdx**2),
    }


def exact_log_px(model: HierarchicalVAE, x: torch.Tensor) -> torch.Tensor:
    """log N(x; C b + d, C (A A^T + S1) C^T + Sx) per row (N,)."""
    m = layers(model)
    prior_z1 = m["A"] @ m["A"].T + m["S1"]
    cov = m["C"] @ prior_z1 @ m["C"].T + m["Sx"]
    return MultivariateNormal(m["C"] @ m["b"] + m["d"], cov).log_prob(x)


def expected_log_normal(mean: torch.Tensor, cov: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E_v[log N(v; 0, sigma)] for v ~ N(mean (N, k), cov (k, k)): (N,)."""
    at_mean = MultivariateNormal(torch.zeros_like(mean[0]), sigma).log_prob(mean)
    return at_mean - 0.5 * torch.trace(torch.linalg.solve(sigma, cov))


def exact_elbo(
    model: HierarchicalVAE, guide: HierarchicalVAEGuide, x: torch.Tensor
) -> torch.Tensor:
    """E_q[log p(x, z1, z2) - log q(z1, z2 | x)] per row (N,), for a linear model and guide:
    z1 ~ N(E x + e, Q1) and z2 = F z1 + f + eps, eps ~ N(0, Q2)."""
    m = layers(model)
    latent, top = model.latent_dim, model.top_dim
    e_w, e_b = guide.bottom[0].weight, guide.bottom[0].bias
    f_w, f_b = guide.top[0].weight, guide.top[0].bias
    q1 = torch.diag((torch.nn.functional.softplus(e_b[latent:]) + MIN_SCALE) ** 2)
    q2 = torch.diag((torch.nn.functional.softplus(f_b[top:]) + MIN_SCALE) ** 2)
    mean1 = x @ e_w[:latent].T + e_b[:latent]  # (N, L)
    big_f, f = f_w[:top], f_b[:top]
    # x - C z1 - d
    log_lik = expected_log_normal(x - mean1 @ m["C"].T - m["d"], m["C"] @ q1 @ m["C"].T, m["Sx"])
    # z1 - A z2 - b = (I - A F) z1 - A f - b - A eps
    g = torch.eye(latent, dtype=x.dtype) - m["A"] @ big_f
    residual1 = mean1 @ g.T - m["A"] @ f - m["b"]
    log_p1 = expected_log_normal(residual1, g @ q1 @ g.T + m["A"] @ q2 @ m["A"].T, m["S1"])
    # z2 = F z1 + f + eps
    log_p2 = expected_log_normal(
        mean1 @ big_f.T + f, big_f @ q1 @ big_f.T + q2, torch.eye(top, dtype=x.dtype)
    )
    entropy = sum(
        0.5 * torch.logdet(2 * math.pi * math.e * q) for q in (q1, q2)
    )  # -E log q(z1 | x) - E log q(z2 | z1)
    return log_lik + log_p1 + log_p2 + entropy


def set_posterior(model: HierarchicalVAE, guide: HierarchicalVAEGuide, inflate: float = 1.0):
    """The guide's layers set to the means of p(z1 | x) and p(z2 | z1) and the diagonals of
    their covariances times ``inflate``: the exact posterior when L = K = 1 and inflate = 1."""
    m = layers(model)
    prior_z1 = m["A"] @ m["A"].T + m["S1"]
    precision_x = torch.linalg.inv(m["Sx"])
    cov1 = torch.linalg.inv(torch.linalg.inv(prior_z1) + m["C"].T @ precision_x @ m["C"])
    gain1 = cov1 @ m["C"].T @ precision_x  # (L, D)
    bias1 = cov1 @ torch.linalg.solve(prior_z1, m["b"]) - gain1 @ m["d"]
    set_gaussian_layer(guide.bottom[0], gain1, bias1, (cov1.diagonal() * inflate).sqrt())
    precision1 = torch.linalg.inv(m["S1"])
    eye = torch.eye(model.top_dim, dtype=cov1.dtype)
    cov2 = torch.linalg.inv(eye + m["A"].T @ precision1 @ m["A"])
    gain2 = cov2 @ m["A"].T @ precision1  # (K, L)
    set_gaussian_layer(guide.top[0], gain2, -gain2 @ m["b"], (cov2.diagonal() * inflate).sqrt())


class TestHierarchicalVAEContract(PairContract):
    """The Gaussian likelihood is the linear pair's, below."""

    def make_pair(self):
        model = HierarchicalVAE(64, 4, 2, (32,), "continuous-bernoulli")
        return Pair(model, HierarchicalVAEGuide(64, 4, 2, (32,)), (digits(),))


class TestBernoulliConvHierarchicalVAEContract(PairContract):
    def make_pair(self):
        x = (digits() > 0.5).float()
        shape = (1, 8, 8)
        model = HierarchicalVAE(64, 3, 2, (16,), architecture="conv", image_shape=shape)
        guide = HierarchicalVAEGuide(64, 3, 2, (16,), architecture="conv", image_shape=shape)
        return Pair(model, guide, (x,))


class TestLinearHierarchicalVAEWithItsExactPosteriorContract(PairContract):
    """q(z1 | x) q(z2 | z1) = p(z1 | x) p(z2 | z1): every weight is the Gaussian p(x)."""

    def make_pair(self):
        model, guide = linear_pair(3, 1, 1, seed=5)
        set_posterior(model, guide)
        x = torch.randn(12, 3, dtype=torch.float64) * 2
        return Pair(model, guide, (x,), exact=exact_log_px(model, x).detach())


def test_the_two_closed_forms_agree_at_the_exact_posterior():
    """exact_elbo and exact_log_px are derived apart (Gaussian expectations layer by layer;
    the marginal of x): below it for a random guide, equal to it at the exact posterior."""
    model, guide = linear_pair(3, 1, 1, seed=2)
    x = torch.randn(8, 3, dtype=torch.float64)
    with torch.no_grad():
        assert (exact_log_px(model, x) - exact_elbo(model, guide, x) > 0.1).all()
        set_posterior(model, guide)
        torch.testing.assert_close(
            exact_elbo(model, guide, x), exact_log_px(model, x), rtol=0, atol=1e-10
        )


@pytest.fixture
def wide_pair():
    """D = 4, L = K = 2: the guide's diagonal Gaussians cannot hold the posterior; set to its
    means with twice its variances, they are a proposal with light-tailed weights."""
    model, guide = linear_pair(4, 2, 2, seed=7)
    set_posterior(model, guide, inflate=2.0)
    x = torch.randn(6, 4, dtype=torch.float64) * 2
    return model, guide, x


def test_monte_carlo_elbo_matches_the_closed_form(wide_pair):
    """mean_k log w_k over K draws of the guide: within 4 standard errors of the ELBO."""
    model, guide, x = wide_pair
    result = log_marginal(model, guide, x, num_samples=4000, keep_log_weights=True, progress=False)
    stderr = result.log_weights.std(dim=1) / math.sqrt(4000)
    with torch.no_grad():
        expected = exact_elbo(model, guide, x)
        assert (exact_log_px(model, x) - expected > 1e-3).all()  # not the trivial case
    assert ((result.elbo - expected).abs() < 4 * stderr).all(), (result.elbo, expected, stderr)


def test_importance_sampled_log_likelihood_converges_to_the_gaussian_marginal(wide_pair):
    """pyrovae.log_marginal's estimate within 4 of its standard errors of log p(x); 16 times
    the draws shrink the error about 4 times."""
    model, guide, x = wide_pair
    with torch.no_grad():
        exact = exact_log_px(model, x)
    errors = []
    for k in (250, 4000):
        result = log_marginal(model, guide, x, num_samples=k, progress=False)
        assert (result.khat < 0.5).all()
        assert ((result.log_likelihood - exact).abs() < 4 * result.stderr).all()
        errors.append(result.stderr.mean().item())
    assert errors[1] == pytest.approx(errors[0] / 4, rel=0.25)


def test_the_elbo_pyro_computes_is_the_closed_form_by_both_objectives(wide_pair):
    """Pyro's Trace_ELBO on the pair (many particles, vectorized) agrees with exact_elbo."""
    model, guide, x = wide_pair
    elbo = Trace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        estimate = -elbo.loss(model, guide, x)
        expected = exact_elbo(model, guide, x).sum().item()
    assert estimate == pytest.approx(expected, abs=0.05 * len(x))


def test_beta_weights_both_layers():
    model = HierarchicalVAE(8, 3, 2, beta=4.0)
    assert model.latent_scales == {"z1": 4.0, "z2": 4.0}
    assert HierarchicalVAE(8, 3, 2).latent_scales == {}


def test_the_sites_are_ordered_for_ancestral_sampling_and_bottom_up_inference():
    model, guide = HierarchicalVAE(64, 3, 2, (16,)), HierarchicalVAEGuide(64, 3, 2, (16,))
    x = digits(5)
    model_trace = pyro.poutine.trace(model).get_trace(x)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    assert [n for n in model_trace.stochastic_nodes if n != "data"] == ["z2", "z1"]
    assert [n for n in guide_trace.stochastic_nodes if n != "data"] == ["z1", "z2"]
    assert model_trace.nodes["x"]["is_observed"]
    assert guide_trace.nodes["z1"]["value"].shape == (5, 3)
    assert guide_trace.nodes["z2"]["value"].shape == (5, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_dim": 0}, "top_dim must be at least 1, got 0"),
        ({"latent_dim": 0}, "latent_dim must be at least 1, got 0"),
        ({"beta": -1.0}, "beta must be positive"),
    ],
)
def test_bad_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalVAE(8, **{"latent_dim": 3, **kwargs})


def test_rows_of_the_wrong_width_are_refused_naming_the_shape():
    with pytest.raises(ValueError, match=r"rows x of shape \(N, 64\), got \(5, 8, 8\)"):
        HierarchicalVAE(64, 3, 2)(digits(5).reshape(5, 8, 8))
