"""log_marginal against exact answers: a conjugate Gaussian pair and an enumerated mixture."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.infer import log_importance_weights, log_marginal

# z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2), p(z | x) = N(x / 2, 1 / 2).


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def exact_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


def shifted_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2 + 0.4, 0.6))


@pytest.fixture
def x():
    torch.set_default_dtype(torch.float64)
    return torch.linspace(-3, 3, 9)


def exact_log_p(x):
    return dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)


def test_exact_posterior_gives_exact_answer_and_equal_weights(x):
    for batch_size, chunk in [(None, None), (2, 7)]:
        r = log_marginal(
            model,
            exact_guide,
            x,
            num_samples=50,
            batch_size=batch_size,
            particle_chunk=chunk,
            keep_log_weights=True,
            progress=False,
        )
        assert torch.allclose(r.log_likelihood, exact_log_p(x), atol=1e-12)
        assert torch.allclose(r.elbo, exact_log_p(x), atol=1e-12)  # zero gap
        assert torch.allclose(r.ess, torch.full_like(r.ess, 50.0))
        assert r.log_weights.shape == (9, 50)
        assert torch.allclose(r.log_weights, exact_log_p(x)[:, None].expand(9, 50), atol=1e-12)


def test_guide_proposal_is_within_its_standard_error(x):
    r = log_marginal(model, shifted_guide, x, num_samples=20000, progress=False)
    z = (r.log_likelihood - exact_log_p(x)) / r.stderr
    assert z.abs().max() < 4  # 9 examples, each within 4 standard errors
    assert (r.khat < 0.7).all()
    assert (r.elbo < exact_log_p(x)).all()  # the ELBO lies below log p(x)


def test_prior_proposal_is_consistent_but_noisier():
    # z ~ N(0, 1), x_d | z ~ N(z, 1) for d = 1..20: the posterior is 20 times narrower than the
    # prior, so prior draws rarely land where the likelihood is (the lecture's point).
    torch.set_default_dtype(torch.float64)
    d = 20

    def model20(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[:-1]), 1.0))
            pyro.sample(
                "x", dist.Normal(z[..., None].expand(z.shape + (d,)), 1.0).to_event(1), obs=x
            )

    def guide20(x):  # close to the exact posterior N(sum x / (d + 1), 1 / (d + 1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.sum(-1) / (d + 1) + 0.05, 1.2 / math.sqrt(d + 1)))

    x = torch.randn(6, 1) + torch.randn(6, d)
    exact = dist.MultivariateNormal(torch.zeros(d), torch.eye(d) + torch.ones(d, d)).log_prob(x)
    guide = log_marginal(model20, guide20, x, num_samples=2000, progress=False)
    prior = log_marginal(model20, guide20, x, num_samples=2000, proposal="prior", progress=False)
    assert ((guide.log_likelihood - exact) / guide.stderr).abs().max() < 4
    assert (prior.stderr > 5 * guide.stderr).all()
    assert (prior.ess < guide.ess / 2).all()
    assert prior.elbo is None  # the mean log weight under the prior is not an ELBO


def test_importance_estimate_is_biased_low_for_small_k(x):
    # E[log p-hat_K] is the IWAE bound: below log p(x), rising with K. Each of 200 copies
    # of a row draws its own K particles: 200 independent estimates per row in one call.
    means = []
    copies = x.repeat(200)  # (200 N,)
    for k in (1, 10, 100):
        draws = log_marginal(model, shifted_guide, copies, num_samples=k, progress=False)
        means.append(draws.log_likelihood.reshape(200, len(x)).mean(0))
    assert means[0].mean() < means[1].mean() < means[2].mean()
    assert (means[0] < means[2]).all()
    assert (means[2] < exact_log_p(x) + 0.01).all()


locs = torch.tensor([-2.0, 0.0, 3.0])
weights = torch.tensor([0.2, 0.5, 0.3])


@pyro.infer.config_enumerate
def mixture(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(weights.to(x.dtype)))
        pyro.sample("x", dist.Normal(locs.to(x.dtype)[c], 1.0), obs=x)


def no_guide(x):
    pass


@pytest.mark.parametrize("proposal", ["guide", "prior"])
def test_enumerated_sites_are_summed_exactly(x, proposal):
    r = log_marginal(mixture, no_guide, x, num_samples=3, proposal=proposal, progress=False)
    by_hand = torch.logsumexp(
        weights.double().log() + dist.Normal(locs.double(), 1.0).log_prob(x[:, None]), -1
    )
    assert torch.allclose(r.log_likelihood, by_hand, atol=1e-12)


def test_vector_observations_and_weights_are_per_example():
    def vec_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            loc = z.sum(-1, keepdim=True).expand(z.shape[:-1] + (3,))
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def vec_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))

    x = torch.randn(5, 3)
    lw = log_importance_weights(vec_model, vec_guide, (x,), 7)
    assert lw.shape == (5, 7)


def test_a_global_latent_gives_the_log_posterior_predictive():
    """mu ~ N(0, 1) global, z_n ~ N(mu, 1), x_n ~ N(z_n, s^2). With q(mu) = N(m, v) and
    q(z_n | x_n, mu) the exact conditional posterior, each weight is p(x_n | mu_k) =
    N(x_n; mu_k, 1 + s^2), so the estimate must be the posterior predictive under q,
    log N(x_n; m, 1 + s^2 + v), within its Monte Carlo error: not log p(x_n)."""
    torch.set_default_dtype(torch.float64)
    s, m, v = 0.5, 1.5, 0.3**2
    x = torch.tensor([-1.0, 0.5, 2.0, 4.0])

    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            pyro.sample("x", dist.Normal(z, s), obs=x)

    def global_guide(x):
        mu = pyro.sample("mu", dist.Normal(m, math.sqrt(v)))
        with pyro.plate("data", x.shape[0]):
            mean = (mu * s**2 + x) / (1 + s**2)
            pyro.sample("z", dist.Normal(mean, math.sqrt(s**2 / (1 + s**2))))

    k = 4000
    result = log_marginal(global_model, global_guide, x, num_samples=k, progress=False)
    assert result.estimand == "log posterior predictive"
    assert result.global_sites == ("mu",)
    assert result.summary()["estimand"] == "log posterior predictive"
    exact = dist.Normal(m, math.sqrt(1 + s**2 + v)).log_prob(x)
    # The weights are a smooth function of one Gaussian draw: the delta-method error holds;
    # compare it with its own closed form, sd(w) / (sqrt(K) E w) for w = N(x; mu, 1 + s^2).
    mu = torch.distributions.Normal(m, math.sqrt(v)).sample((200_000,))
    w = dist.Normal(mu[:, None], math.sqrt(1 + s**2)).log_prob(x).exp()
    expected_se = w.std(0) / (math.sqrt(k) * w.mean(0))
    torch.testing.assert_close(result.stderr, expected_se, rtol=0.15, atol=0)
    assert ((result.log_likelihood - exact).abs() < 4 * expected_se + 1e-3).all()
    # log p(x_n) under the prior differs by far more than the error: a different quantity.
    prior_marginal = dist.Normal(0.0, math.sqrt(2 + s**2)).log_prob(x)
    assert ((result.log_likelihood - prior_marginal).abs() > 20 * expected_se).any()
    with pytest.raises(ValueError, match="'mu' is a global latent.*proposal='guide'"):
        log_marginal(global_model, global_guide, x, proposal="prior", progress=False)


def test_a_global_latent_the_guide_does_not_sample_is_refused(x):
    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def empty(x):
        pass

    with pytest.raises(ValueError, match="'mu' is a global latent .* the guide does not"):
        log_marginal(global_model, empty, x, num_samples=4, progress=False)


def test_bad_arguments_are_explained(x):
    with pytest.raises(ValueError, match="proposal must be one of"):
        log_marginal(model, exact_guide, x, proposal="posterior")
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        log_marginal(model, exact_guide, x, num_samples=0)


def test_non_finite_weights_in_a_later_pass_are_refused_naming_the_examples():
    """Pyro validates the first pass only; the weights of every pass are checked."""
    x = torch.randn(9, dtype=torch.float64)
    x[6] = float("nan")  # in the fourth pass of two examples
    with pytest.raises(ValueError, match=r"1 example\(s\) \[6\] are not finite"):
        log_marginal(model, exact_guide, x, num_samples=4, batch_size=2, progress=False)


def test_a_zero_weight_among_others_is_legitimate_but_all_zero_is_refused():
    from pyrovae.infer.marginal import NonFiniteWeights, check_weights

    lw = torch.tensor([[0.0, -math.inf, -1.0], [-math.inf, -math.inf, -math.inf]])
    check_weights(lw[:1])
    with pytest.raises(NonFiniteWeights, match=r"\[13\]"):
        check_weights(lw, offset=12)


def test_non_finite_weights_can_be_masked_with_a_warning_naming_them():
    from pyrovae.infer.marginal import NonFiniteWeightsWarning

    torch.set_default_dtype(torch.float64)  # conftest restores float32
    x = torch.linspace(-3, 3, 9)
    x[6] = float("nan")  # in the fourth pass of two examples
    with pytest.warns(NonFiniteWeightsWarning, match=r"1 of 9 example\(s\) \[6\]"):
        r = log_marginal(
            model, exact_guide, x, num_samples=4, batch_size=2, progress=False,
            on_nonfinite="mask",
        )  # fmt: skip
    assert r.masked.tolist() == [i == 6 for i in range(9)]
    kept = torch.cat([x[:6], x[7:]])
    assert r.mean() == pytest.approx(float(exact_log_p(kept).mean()), abs=1e-10)
    summary = r.summary()
    assert summary["masked_examples"] == [6]
    assert math.isfinite(summary["log_likelihood"]) and math.isfinite(summary["elbo"])
    assert r.worst_index != 6
    with pytest.raises(ValueError, match="on_nonfinite must be 'raise' or 'mask'"):
        log_marginal(model, exact_guide, x, on_nonfinite="ignore")
