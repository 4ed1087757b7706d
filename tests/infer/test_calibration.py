"""Estimators calibrated, not only bounded: the errors pyrovae reports against the spread
of repeated estimates and against closed forms, and DReG's gradient draw for draw.

The model is z ~ N(0, 1), x | z ~ N(z, 1), so p(x) = N(x; 0, 2) and p(z | x) = N(x/2, 1/2);
the guide q(z | x) = N(x/2 + 0.5, 0.9^2) is off by a known amount. Then w = p(x, z) / q(z)
= p(x) N(z; x/2, 1/2) / q(z), and E_q[w^2] / p(x)^2 = int N(z; x/2, 1/2)^2 / q(z) dz is
computed by quadrature: the delta-method standard error of log p-hat_K is
sqrt((E w^2 / p^2 - 1) / K), and the ESS tends to K p^2 / E w^2.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyrovae.infer import IWAE_ELBO, log_marginal
from pyrovae.infer.marginal import LogMarginal
from pyrovae.module import LocalPyroModule

SHIFT, SCALE = 0.5, 0.9
REPEATS = 200  # independent estimates per example
X = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.7, 2.5, 3.0, -3.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2 + SHIFT, SCALE))


def second_moment(x: torch.Tensor) -> torch.Tensor:
    """E_q[w^2] / p(x)^2 per example, by quadrature on a fine grid."""
    z = torch.linspace(-15, 15, 60001)[:, None]
    posterior = dist.Normal(x / 2, math.sqrt(0.5)).log_prob(z)
    proposal = dist.Normal(x / 2 + SHIFT, SCALE).log_prob(z)
    return torch.trapezoid((2 * posterior - proposal).exp(), z[:, 0], dim=0)


@pytest.fixture(scope="module")
def repeated():
    """One call: each example repeated REPEATS times, K = 100, so every row is an
    independent estimate; results (REPEATS, 10)."""
    torch.set_default_dtype(torch.float64)
    pyro.set_rng_seed(7)
    k = 100
    rows = X.repeat(REPEATS)
    r = log_marginal(model, guide, rows, num_samples=k, keep_log_weights=True, progress=False)
    torch.set_default_dtype(torch.float32)
    return r, k


def test_reported_standard_errors_match_the_spread_of_repeated_estimates(repeated):
    r, k = repeated
    estimates = r.log_likelihood.reshape(REPEATS, len(X))
    reported = r.stderr.reshape(REPEATS, len(X)).mean(0)
    ratio = estimates.std(0) / reported
    assert ((0.8 < ratio) & (ratio < 1.25)).all(), ratio
    # Absolute: the reported error against the closed-form delta-method error.
    exact_se = ((second_moment(X) - 1) / k).sqrt()
    torch.testing.assert_close(reported, exact_se, rtol=0.1, atol=0)
    # The estimates sit at log p(x) less the delta method's bias, Var / (2 K p^2).
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(X)
    bias = -(second_moment(X) - 1) / (2 * k)
    deviation = estimates.mean(0) - (exact + bias)
    assert (deviation.abs() < 4 * estimates.std(0) / math.sqrt(REPEATS)).all()


def test_mean_stderr_matches_the_spread_of_the_mean_over_examples(repeated):
    r, k = repeated
    shape = (REPEATS, len(X))
    parts = [r.log_likelihood.reshape(shape), r.stderr.reshape(shape)]
    per_repeat = [LogMarginal(ll, se, se, se, k, "guide") for ll, se in zip(*parts, strict=True)]
    means = torch.tensor([m.mean() for m in per_repeat])
    reported = torch.tensor([m.mean_stderr() for m in per_repeat]).mean()
    assert 0.8 < float(means.std() / reported) < 1.25
    # sqrt(sum_n se_n^2) / N, by hand.
    se = parts[1][0]
    assert per_repeat[0].mean_stderr() == pytest.approx(float(se.pow(2).sum().sqrt() / len(se)))


def test_ess_is_the_normalised_weights_formula_and_tends_to_its_limit(repeated):
    r, k = repeated
    wbar = torch.softmax(r.log_weights, -1)
    torch.testing.assert_close(r.ess, 1 / wbar.pow(2).sum(-1), rtol=1e-12, atol=0)
    limit = k / second_moment(X)  # K (E w)^2 / E w^2
    mean_ess = r.ess.reshape(REPEATS, len(X)).mean(0)
    # A ratio estimate: biased by O(1/K), here within 10% of its limit.
    torch.testing.assert_close(mean_ess, limit, rtol=0.1, atol=0)


def test_iwae_bound_lies_below_the_exact_log_likelihood_on_factor_analysis():
    from test_importance_fa import imperfect_guide

    from pyrovae.models import FactorAnalysis

    g = torch.Generator().manual_seed(0)
    fa = FactorAnalysis(6, 2)
    with torch.no_grad():
        fa.W.copy_(2.0 * torch.randn(6, 2, generator=g))
        fa.b.copy_(torch.randn(6, generator=g))
        fa.set_noise_variance(0.05 + 0.2 * torch.rand(6, generator=g))
        x = torch.randn(12, 2, generator=g) @ fa.W.T + fa.b + 0.3 * torch.randn(12, 6, generator=g)
        exact = fa.log_prob(x)
    encoder = imperfect_guide(fa, x)
    means, errors = [], []
    for k in (1, 10, 100):
        with torch.no_grad():
            draws = torch.stack(
                [IWAE_ELBO(k).per_example(fa, encoder, x) for _ in range(100)]
            )  # (100, 12)
        means.append(draws.mean(0))
        errors.append(draws.std(0) / 10)
    for mean, error in zip(means, errors, strict=True):
        assert (mean < exact + 3 * error + 1e-9).all()  # E L_K <= log p(x)
    assert (means[0] < means[1]).all() and (means[1].mean() < means[2].mean())
    assert (exact - means[2]).max() < 0.05  # and it closes in on log p(x)


class Encoder(PyroModule):
    """q(z | x) = N(a x + b, exp(s)^2), parameters in Pyro's store (a plain PyroModule)."""

    def __init__(self):
        super().__init__()
        self.a = PyroParam(torch.tensor(0.3))
        self.b = PyroParam(torch.tensor(0.2))
        self.s = PyroParam(torch.tensor(-0.1))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            DRAWS.append(pyro.sample("z", dist.Normal(self.a * x + self.b, self.s.exp())))


class LocalEncoder(Encoder, LocalPyroModule):
    """The same with module-local parameters."""


def classic_encoder(x):
    """The same in Pyro's classic style: pyro.param in the global store."""
    a = pyro.param("a", torch.tensor(0.3))
    b = pyro.param("b", torch.tensor(0.2))
    s = pyro.param("s", torch.tensor(-0.1))
    with pyro.plate("data", x.shape[0]):
        DRAWS.append(pyro.sample("z", dist.Normal(a * x + b, s.exp())))


DRAWS: list[torch.Tensor] = []


def parameters_of(guide) -> list[torch.Tensor]:
    if isinstance(guide, torch.nn.Module):
        return [guide.a, guide.b, guide.s]
    return [pyro.param(name).unconstrained() for name in "abs"]


@pytest.mark.parametrize("make", [Encoder, LocalEncoder, lambda: classic_encoder])
def test_dreg_guide_gradient_equals_the_hand_written_surrogate_draw_for_draw(make):
    """DReG (Tucker et al. 2019): grad_phi = sum_n sum_k wbar_k^2 d log w_k / d z_k dz_k/dphi,
    with log q at fixed phi. Recomputed by hand from the same draws, for a guide whose
    parameters live in Pyro's store, in its module, or in pyro.param."""
    x = torch.tensor([-1.0, 0.3, 2.0, 0.7])
    encoder, k = make(), 6
    pyro.set_rng_seed(11)
    DRAWS.clear()
    loss = IWAE_ELBO(k, dreg=True).differentiable_loss(model, encoder, x)
    params = parameters_of(encoder)
    library = torch.autograd.grad(loss, params)
    # The first vectorized run draws (K, N); later ones replay it (the nesting probe is (N,)).
    z_drawn = next(d for d in DRAWS if d.shape == (k, len(x))).detach()
    a, b, s = (p.detach().clone().requires_grad_() for p in params)
    eps = (z_drawn - (a * x + b).detach()) / s.exp().detach()  # the standard normal draws
    z = a * x + b + s.exp() * eps  # z_k(phi), reparameterised
    log_q_fixed = dist.Normal((a * x + b).detach(), s.exp().detach()).log_prob(z)
    log_w = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(x) - log_q_fixed
    wbar = torch.softmax(log_w.detach(), 0)  # over the K particles, per example
    by_hand = torch.autograd.grad(-(wbar.pow(2) * log_w).sum(), [a, b, s], retain_graph=True)
    for got, want in zip(library, by_hand, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # The value is the IWAE bound of those draws.
    bound = (torch.logsumexp(log_w.detach(), 0) - math.log(k)).sum()
    assert -loss.item() == pytest.approx(bound.item(), abs=1e-10)
    # The first power of wbar (a plausible slip) gives another gradient.
    first_power = torch.autograd.grad(-(wbar * log_w).sum(), [a, b, s])
    assert not torch.allclose(first_power[2], by_hand[2])
