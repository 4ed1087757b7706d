"""scale_latents: which sites get the weight, by how much, and what the wrappers pass through.

Exact checks on a two-latent program (no Monte Carlo): the weight lands on the named latent
site of both programs and nowhere else, multiplies any scale already there, and the wrapped
programs take the caller's positional and keyword arguments and name what they wrap.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyrovae.infer.scale import scale_latents


def model(x: torch.Tensor, shift: float = 0.0) -> None:
    """p(w) p(z) p(x | z, w) per example: z, w ~ N(0, 1), x ~ N(z + w + shift, 1)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        w = pyro.sample("w", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z + w + shift, 1.0), obs=x)


def guide(x: torch.Tensor, shift: float = 0.0) -> None:
    """q(z | x) = N(x / 2 - shift, 0.5), q(w | x) = N(x / 2, 0.5)."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2 - shift, 0.5))
        pyro.sample("w", dist.Normal(x / 2, 0.5))


X = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)


def scales_of(program, *args, **kwargs) -> dict[str, float]:
    trace = prune_subsample_sites(poutine.trace(program).get_trace(*args, **kwargs))
    return {
        name: float(site["scale"]) for name, site in trace.nodes.items() if site["type"] == "sample"
    }


def test_only_the_named_latent_is_weighted_in_model_and_guide():
    scaled_model, scaled_guide = scale_latents(model, guide, {"z": 4.0})
    assert scales_of(scaled_model, X) == {"z": 4.0, "w": 1.0, "x": 1.0}
    assert scales_of(scaled_guide, X) == {"z": 4.0, "w": 1.0}


def test_an_observed_site_is_never_weighted_even_when_named():
    scaled_model, _ = scale_latents(model, guide, {"x": 3.0, "w": 0.25})
    assert scales_of(scaled_model, X) == {"z": 1.0, "w": 0.25, "x": 1.0}


def test_the_weight_multiplies_a_scale_already_on_the_site():
    scaled_model, _ = scale_latents(poutine.scale(model, scale=3.0), guide, {"z": 2.0})
    assert scales_of(scaled_model, X) == {"z": 6.0, "w": 3.0, "x": 3.0}


def test_the_weighted_log_joint_adds_beta_minus_one_log_prior():
    """Replaying one guide draw: log p_scaled = log p + (beta - 1) log p(z), exactly."""
    beta = 0.5
    scaled_model, _ = scale_latents(model, guide, {"z": beta})
    draws = poutine.trace(guide).get_trace(X)
    plain = poutine.trace(poutine.replay(model, trace=draws)).get_trace(X)
    scaled = poutine.trace(poutine.replay(scaled_model, trace=draws)).get_trace(X)
    z = draws.nodes["z"]["value"]
    log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum()
    expected = plain.log_prob_sum() + (beta - 1) * log_prior
    torch.testing.assert_close(scaled.log_prob_sum(), expected, rtol=1e-12, atol=1e-12)


def test_the_wrappers_pass_keyword_arguments_through():
    scaled_model, scaled_guide = scale_latents(model, guide, {"z": 2.0})
    shift = 5.0
    trace = poutine.trace(scaled_guide).get_trace(X, shift=shift)
    model_trace = poutine.trace(poutine.replay(scaled_model, trace=trace)).get_trace(X, shift=shift)
    z, w = trace.nodes["z"]["value"], trace.nodes["w"]["value"]
    torch.testing.assert_close(model_trace.nodes["x"]["fn"].loc, z + w + shift)
    guide_loc = trace.nodes["z"]["fn"].loc
    torch.testing.assert_close(guide_loc, X / 2 - shift)


def test_the_wrappers_name_the_programs_they_wrap():
    """fit sees through the wrappers by ``__wrapped__`` to find the programs' modules."""
    scaled_model, scaled_guide = scale_latents(model, guide, {"z": 2.0})
    assert scaled_model.__wrapped__ is model
    assert scaled_guide.__wrapped__ is guide


def test_no_weights_return_the_programs_themselves():
    scaled_model, scaled_guide = scale_latents(model, guide, {})
    assert scaled_model is model and scaled_guide is guide


@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_the_elbo_of_the_weighted_pair_weights_the_kl_by_beta(beta):
    """Trace_ELBO of the weighted pair at one guide draw: -log p(x | z, w) + beta (log q(z) -
    log p(z)) + log q(w) - log p(w), computed by hand from the same draw."""
    scaled_model, scaled_guide = scale_latents(model, guide, {"z": beta})
    pyro.set_rng_seed(7)
    loss = pyro.infer.Trace_ELBO().loss(scaled_model, scaled_guide, X)
    pyro.set_rng_seed(7)
    draws = poutine.trace(guide).get_trace(X)
    z, w = draws.nodes["z"]["value"], draws.nodes["w"]["value"]
    prior = dist.Normal(torch.zeros((), dtype=torch.float64), 1.0)
    q = dist.Normal(X / 2, 0.5)  # q(z | x) and q(w | x) alike at shift 0
    log_lik = dist.Normal(z + w, 1.0).log_prob(X).sum()
    kl_z = (q.log_prob(z) - prior.log_prob(z)).sum()
    kl_w = (q.log_prob(w) - prior.log_prob(w)).sum()
    assert loss == pytest.approx((-log_lik + beta * kl_z + kl_w).item(), rel=1e-12)
