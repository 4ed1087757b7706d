"""The ArviZ export on a conjugate oracle: z ~ N(0, 1), x | z ~ N(z, s^2), whose posterior is
N(x / (1 + s^2), s^2 / (1 + s^2)), proposed from a deliberately poor guide q(z | x) = N(0, 2^2).

Monte Carlo tolerances are 4 standard errors, computed: sqrt(var / ESS) for a mean and
var sqrt(2 / ESS) for a variance, with the importance ESS of the draws."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from arviz_quiet import az

from pyrovae.diagnostics import compare_log_likelihoods, to_inference_data
from pyrovae.diagnostics.arviz import NO_LOO
from pyrovae.infer import log_marginal
from pyrovae.infer.psis import pareto_khat

NOISE, GUIDE_SCALE = 0.5, 2.0
POSTERIOR_VAR = NOISE**2 / (1 + NOISE**2)


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def summary(idata):
    return az().summary(idata, var_names=["z"], kind="diagnostics", round_to="none")


def pair(noise=NOISE):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, noise).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros_like(x), GUIDE_SCALE).to_event(1))

    return model, guide


def log_normal(v, loc, scale):
    return -0.5 * ((v - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def merged(array) -> np.ndarray:
    """An export's variable (chain=2, draw=K/2, ...) with its chains joined: (K, ...)."""
    values = np.asarray(array.values if hasattr(array, "values") else array)
    return values.reshape(-1, *values.shape[2:])


def draws(idata) -> np.ndarray:
    return merged(idata.posterior["z"])[:, :, 0]  # (K, E)


def test_log_weights_ess_and_khat_are_those_of_the_stored_guide_draws():
    x = torch.tensor([[1.5], [0.0], [-1.0]])
    raw = to_inference_data(*pair(), x, examples=[0, 1, 2], num_samples=500, resample=False)
    z = draws(raw)
    log_joint = log_normal(z, 0.0, 1.0) + log_normal(x[:, 0].numpy(), z, NOISE)  # (K, E)
    by_hand = log_joint - log_normal(z, 0.0, GUIDE_SCALE)
    stats = raw.sample_stats
    np.testing.assert_allclose(merged(stats["log_weight"]), by_hand, rtol=0, atol=1e-10)
    weight = np.exp(by_hand - by_hand.max(0))
    weight /= weight.sum(0)
    np.testing.assert_allclose(merged(stats["weight"]), weight, rtol=0, atol=1e-12)
    ess = 1 / (weight**2).sum(0)
    np.testing.assert_allclose(stats["importance_ess"].values, ess, rtol=1e-10)
    assert (ess > 20).all() and (ess < 250).all()  # a poor guide: far fewer than K = 500
    khat = pareto_khat(torch.as_tensor(by_hand.T)).numpy()
    np.testing.assert_allclose(stats["importance_khat"].values, khat, rtol=0, atol=1e-8)


def test_resampled_draws_are_adjacent_copies_of_the_same_guide_draws():
    x = torch.tensor([[1.5], [0.0], [-1.0]])
    kwargs = {"examples": [0, 1, 2], "num_samples": 500, "seed": 3}
    raw = to_inference_data(*pair(), x, resample=False, **kwargs)
    resampled = to_inference_data(*pair(), x, **kwargs)
    index = merged(resampled.sample_stats["guide_draw"])  # (K, E)
    assert (np.diff(index, axis=0) >= 0).all()  # copies of one guide draw are adjacent
    columns = np.arange(3)
    np.testing.assert_array_equal(draws(resampled), draws(raw)[index, columns])
    np.testing.assert_array_equal(
        merged(resampled.sample_stats["log_weight"]),
        merged(raw.sample_stats["log_weight"])[index, columns],
    )
    np.testing.assert_array_equal(
        resampled.sample_stats["importance_ess"].values, raw.sample_stats["importance_ess"].values
    )
    assert "weight" not in resampled.sample_stats  # resampled draws are equally weighted
    assert resampled.posterior.attrs["draws"].startswith("500 draws resampled")


def test_resampling_reproduces_the_conjugate_posterior_and_ignoring_the_weights_does_not():
    x = torch.tensor([[1.5], [0.0], [-1.0], [2.5]])
    kwargs = {"examples": [0, 1, 2, 3], "num_samples": 4000, "seed": 1}
    resampled = to_inference_data(*pair(), x, **kwargs)
    raw = to_inference_data(*pair(), x, resample=False, **kwargs)
    ess = resampled.sample_stats["importance_ess"].values
    mean = x[:, 0].numpy() / (1 + NOISE**2)
    mean_se, var_se = np.sqrt(POSTERIOR_VAR / ess), POSTERIOR_VAR * np.sqrt(2 / ess)
    z = draws(resampled)
    assert (np.abs(z.mean(0) - mean) < 4 * mean_se).all(), (z.mean(0), mean, mean_se)
    assert (np.abs(z.var(0) - POSTERIOR_VAR) < 4 * var_se).all(), (z.var(0), var_se)
    # The raw guide draws weighted by the stored weights agree too ...
    weight = merged(raw.sample_stats["weight"])
    weighted_mean = (weight * draws(raw)).sum(0)
    weighted_var = (weight * (draws(raw) - weighted_mean) ** 2).sum(0)
    assert (np.abs(weighted_mean - mean) < 4 * mean_se).all()
    assert (np.abs(weighted_var - POSTERIOR_VAR) < 4 * var_se).all()
    # ... and unweighted they are q's: many standard errors from the posterior.
    off_mean = np.abs(draws(raw).mean(0) - mean) / mean_se
    off_var = np.abs(draws(raw).var(0) - POSTERIOR_VAR) / var_se
    assert (off_var > 100).all(), off_var
    assert (off_mean[[0, 2, 3]] > 10).all(), off_mean  # example 1 (x = 0) has the guide's mean


def test_arviz_uncertainty_of_the_resampled_mean_is_its_actual_spread():
    """One example 200 times over, each copy with its own K guide draws and resampling: the
    spread of the 200 resampled means is the truth that az.summary's mcse_mean must match (it
    was half of it with the draws in random order, which ArviZ reads as K independent draws)."""
    examples, k, value = 200, 500, 3.5
    x = torch.full((examples, 1), value)
    model, guide = pair()
    marginal = log_marginal(model, guide, x, num_samples=10, progress=False)  # not under test
    idata = to_inference_data(
        model, guide, x, examples=range(examples), num_samples=k, marginal=marginal
    )
    spread = draws(idata).mean(0).std(ddof=1)
    tolerance = 4 / math.sqrt(2 * (examples - 1))  # relative standard error of a sd, times 4
    stats = summary(idata)
    assert abs(stats["mcse_mean"].mean() / spread - 1) < tolerance, (stats["mcse_mean"], spread)
    ess = idata.sample_stats["importance_ess"].values
    assert np.sqrt(POSTERIOR_VAR / ess).mean() > spread * (1 - tolerance)  # conservative
    assert stats["ess_bulk"].mean() < 0.4 * k
    shuffled = idata.copy()
    rng = np.random.default_rng(0)
    permuted = rng.permuted(draws(idata), axis=0)[..., None]  # (K, E, 1)
    shuffled.posterior["z"].values[:] = permuted.reshape(shuffled.posterior["z"].shape)
    assert summary(shuffled)["mcse_mean"].mean() < spread * (1 - tolerance)
    assert np.sqrt(POSTERIOR_VAR / k) < spread * (1 - tolerance)  # K independent draws' SE


def test_loo_and_compare_are_refused_and_point_to_the_paired_comparison():
    x = torch.tensor([[1.5], [0.0]])
    idata = to_inference_data(*pair(), x, examples=[0], num_samples=100)
    assert "log_likelihood" not in idata.groups()
    assert idata.constant_data.attrs["loo"] == NO_LOO
    assert "compare_log_likelihoods" in NO_LOO and "pyrovae.diagnostics.elpd" in NO_LOO
    arviz = az()
    for estimate in (arviz.loo, arviz.waic):
        with pytest.raises(TypeError, match="log likelihood not found"):
            estimate(idata)
    with pytest.raises(TypeError, match="ELPD computation of compare") as info:
        arviz.compare({"a": idata, "b": idata})
    cause = info.value.__cause__
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert "log likelihood not found" in str(cause)


def test_paired_comparison_from_the_exported_log_marginals():
    """Data from s = 0.5; model b assumes s = 1: exact log p(x) = log N(x; 0, 1 + s^2)."""
    x = torch.randn(300, 1) * math.sqrt(1 + NOISE**2)
    exports = {
        noise: to_inference_data(*pair(noise), x, examples=[0], num_samples=200)
        for noise in (NOISE, 1.0)
    }
    a, b = (exports[noise].constant_data for noise in (NOISE, 1.0))
    assert a.attrs["estimand"] == "log p(x)"
    exact = {
        noise: log_normal(x[:, 0].numpy(), 0.0, math.sqrt(1 + noise**2)) for noise in (NOISE, 1.0)
    }
    for data, noise in ((a, NOISE), (b, 1.0)):
        z = (data["log_marginal"].values - exact[noise]) / data["log_likelihood_stderr"].values
        assert np.abs(z).max() < 5
    ours = compare_log_likelihoods(a["log_marginal"], b["log_marginal"])
    truth = compare_log_likelihoods(exact[NOISE], exact[1.0])
    noise_var = (a["log_likelihood_stderr"] ** 2 + b["log_likelihood_stderr"] ** 2).values
    importance_se = math.sqrt(noise_var.sum()) / len(x)
    assert abs(ours["mean_difference"] - truth["mean_difference"]) < 4 * importance_se
    # Its standard error carries the importance noise of each example's estimate on top.
    expected = math.sqrt(truth["stderr"] ** 2 + noise_var.mean() / len(x))
    assert ours["stderr"] == pytest.approx(expected, rel=4 / math.sqrt(2 * (len(x) - 1)))


def test_paired_comparison_of_per_example_log_likelihoods():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    result = compare_log_likelihoods(a, a - 0.5)
    assert result["mean_difference"] == pytest.approx(0.5)
    assert result["stderr"] == pytest.approx(0.0)
    assert result["share_a_better"] == 1.0
    rng = np.random.default_rng(0)
    noisy = compare_log_likelihoods(rng.normal(size=400), rng.normal(size=400))
    assert abs(noisy["mean_difference"]) < 4 * noisy["stderr"]
