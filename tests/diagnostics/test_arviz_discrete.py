"""to_inference_data with enumerated discrete latents and with global latents.

Oracles in closed form: a mixture prior c ~ Cat(pi), z | c ~ N(mu_c, 1), x | z ~ N(z, 0.5^2),
where p(c | x, z) = p(c | z) is proportional to pi_c N(z; mu_c, 1) for every stored draw z; a
Gaussian mixture with an empty guide, where p(c | x) is exact; a hidden Markov model (a
chain of enumerated states); a global latent drawn by the guide. float64."""

from __future__ import annotations

import logging
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from arviz_quiet import az
from hmm import HMM

from pyrovae.diagnostics import to_inference_data

PI = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
MU = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
X = torch.tensor([[-2.5], [0.4], [2.0], [5.0]], dtype=torch.float64)
PARALLEL = {"enumerate": "parallel"}


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def mixture_prior(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(PI), infer=PARALLEL)
        z = pyro.sample("z", dist.Normal(MU[c].unsqueeze(-1), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def encoder(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x * 0.8, 1.0).to_event(1))


def merged(array) -> np.ndarray:
    values = array.values
    return values.reshape(-1, *values.shape[2:])  # the two chains joined: (K, ...)


def test_each_draw_of_the_cluster_comes_with_its_exact_conditional_probabilities(caplog):
    k = 400
    idata = to_inference_data(mixture_prior, encoder, X, examples=[0, 1, 2, 3], num_samples=k)
    posterior = idata.posterior
    assert posterior["c"].dims == ("chain", "draw", "example")
    assert posterior["c_probs"].dims == ("chain", "draw", "example", "c_value")
    assert posterior.coords["c_value"].values.tolist() == [0, 1, 2]
    z = torch.as_tensor(merged(posterior["z"])[..., 0])  # (K, E)
    exact = torch.softmax(PI.log() + dist.Normal(MU, 1.0).log_prob(z[..., None]), -1)
    np.testing.assert_allclose(merged(posterior["c_probs"]), exact.numpy(), atol=1e-10)
    # The draws c_k ~ p(c | z_k): their frequencies match the mean probabilities.
    c = merged(posterior["c"])
    for value in range(3):
        share = (c == value).mean(0)
        p = exact[..., value].mean(0).numpy()
        se = np.sqrt(np.maximum(p * (1 - p), 1e-4) / k)
        assert (np.abs(share - p) < 5 * se).all(), (value, share, p)
    assert "pyrovae.infer.assign" in posterior.attrs["enumerated"]
    summary = az().summary(idata, var_names=["c_probs"])
    assert len(summary) == 4 * 3
    assert "Shape validation failed" not in caplog.text


def test_a_gaussian_mixture_with_an_empty_guide_has_the_exact_posterior():
    def gmm(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PI), infer=PARALLEL)
            pyro.sample("x", dist.Normal(MU[c].unsqueeze(-1), 1.0).to_event(1), obs=x)

    def empty(x):
        pass

    idata = to_inference_data(gmm, empty, X, examples=[1, 3], num_samples=8)
    exact = torch.softmax(PI.log() + dist.Normal(MU, 1.0).log_prob(X[[1, 3]]), -1)
    probs = merged(idata.posterior["c_probs"])  # (K, E, 3): the same at every draw
    np.testing.assert_allclose(probs, exact.expand(8, 2, 3).numpy(), atol=1e-12)
    assert set(idata.posterior.data_vars) == {"c", "c_probs"}


def test_a_hidden_markov_models_states_are_exported_one_site_per_step():
    x = torch.tensor([[-0.6, -0.4, 0.5, 0.6], [0.5, 0.4, -0.5, -0.6]])
    hmm = HMM()

    def empty(x):
        pass

    idata = to_inference_data(hmm, empty, x, examples=[0, 1], num_samples=8)
    for t in range(4):
        assert idata.posterior[f"s_{t}"].dims == ("chain", "draw", "example")
        probs = merged(idata.posterior[f"s_{t}_probs"])
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
    # The chain sticks (p = 0.9): the first example's states follow its emissions.
    p0 = merged(idata.posterior["s_0_probs"])[0, 0]
    p3 = merged(idata.posterior["s_3_probs"])[0, 0]
    assert p0[0] > 0.5 and p3[1] > 0.5


def test_global_latents_are_exported_as_the_guides_draws():
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 0.5))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, scale.unsqueeze(-1)).to_event(1), obs=x)

    def guide(x):
        pyro.sample("scale", dist.LogNormal(-0.5, 0.1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x * 0.7, 0.6).to_event(1))

    pyro.set_rng_seed(0)
    idata = to_inference_data(model, guide, X, examples=[0, 2], num_samples=400)
    scale = idata.posterior["scale"]
    assert scale.dims == ("chain", "draw")
    draws = merged(scale)
    # The guide's draws, LogNormal(-0.5, 0.1), not resampled: their mean within 4 SE.
    mean = math.exp(-0.5 + 0.1**2 / 2)
    assert abs(draws.mean() - mean) < 4 * draws.std() / math.sqrt(len(draws))
    assert "not resampled" in idata.posterior.attrs["global_latents"]
    assert idata.constant_data.attrs["estimand"] == "log posterior predictive"


def test_a_mixture_prior_with_a_global_latent_pairs_each_draw_with_its_own_global():
    def model(x):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PI), infer=PARALLEL)
            z = pyro.sample("z", dist.Normal((MU[c] + shift).unsqueeze(-1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)

    def guide(x):
        pyro.sample("shift", dist.Normal(0.0, 0.5))
        encoder(x)

    idata = to_inference_data(model, guide, X, examples=[0, 1], num_samples=8, resample=False)
    z = torch.as_tensor(merged(idata.posterior["z"])[..., 0])  # (K, E)
    shift = torch.as_tensor(merged(idata.posterior["shift"]))[:, None, None]  # (K, 1, 1)
    exact = torch.softmax(PI.log() + dist.Normal(MU + shift, 1.0).log_prob(z[..., None]), -1)
    np.testing.assert_allclose(merged(idata.posterior["c_probs"]), exact.numpy(), atol=1e-10)


def test_odd_or_too_few_draws_are_refused():
    for k in (7, 9, 6):
        with pytest.raises(ValueError, match="even and at least 8"):
            to_inference_data(mixture_prior, encoder, X, num_samples=k)


def test_arviz_logs_nothing_for_the_layout(caplog):
    caplog.set_level(logging.WARNING)
    idata = to_inference_data(mixture_prior, encoder, X, num_samples=100)
    arviz = az()
    names = ["z", "c_probs"]  # c's draws can be constant, where ArviZ divides 0 by 0
    arviz.summary(idata, var_names=names)
    arviz.ess(idata, var_names=names)
    arviz.rhat(idata, var_names=names)
    assert "Shape validation failed" not in caplog.text


def test_a_class_the_guide_enumerates_is_drawn_jointly_with_the_latents_it_conditions():
    """The semi-supervised VAE's pattern: the guide enumerates y and draws z given it. Exact
    p(y | x) is proportional to pi_y N(x; mu_y, 1 + 0.5^2)."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(PI))
            z = pyro.sample("z", dist.Normal(MU[y].unsqueeze(-1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(3) / 3), infer=PARALLEL)
            loc = 0.8 * x + 0.2 * MU[y].unsqueeze(-1)
            pyro.sample("z", dist.Normal(loc, 0.7).to_event(1))

    k = 2000
    idata = to_inference_data(model, guide, X, examples=[0, 1, 2], num_samples=k)
    exact = torch.softmax(PI.log() + dist.Normal(MU, math.sqrt(1.25)).log_prob(X[:3]), -1)
    estimate = idata.sample_stats["y_probs_estimate"]
    assert estimate.dims == ("example", "y_value")
    np.testing.assert_allclose(estimate.values, exact.numpy(), atol=0.03)
    y = merged(idata.posterior["y"])  # (K, E): resampled from the 3 * K pairs (y, z)
    assert idata.posterior["y"].dims == ("chain", "draw", "example")
    ess = idata.sample_stats["importance_ess"].values
    for value in range(3):
        p = exact[:, value].numpy()
        se = np.sqrt(np.maximum(p * (1 - p), 1e-3) / ess)
        assert (np.abs((y == value).mean(0) - p) < 5 * se).all(), (value, (y == value).mean(0), p)
    # Each resampled z is a draw given its own y: the mean of z given y = 2 is near mu_2's side.
    z = merged(idata.posterior["z"])[..., 0]
    assert z[y[:, 2] == 2, 2].mean() > z[y[:, 2] == 1, 2].mean()
    assert "not exact" in idata.posterior.attrs["guide_enumerated"]
