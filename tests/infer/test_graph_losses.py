"""The capturable losses equal Pyro's own: value and gradients, every ELBO they stand for."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from torch.distributions import constraints

from pyrovae.infer.enum_loss import traceenum_elbo_loss
from pyrovae.infer.graph_losses import (
    NotCapturable,
    loss_function,
    meanfield_elbo_loss,
    trace_elbo_loss,
)


def model(x):
    loc = pyro.param("prior_loc", torch.tensor(0.3))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(loc, 1.0))
        # A Gamma prior: no closed-form KL with the guide's LogNormal, so the mean-field loss
        # takes its one-sample log p - log q for this site and the closed form for z.
        s = pyro.sample("s", dist.Gamma(2.0, 2.0))
        pyro.sample("x", dist.Normal(z, s), obs=x)


def guide(x):
    loc = pyro.param("q_loc", 0.1 * x)
    scale = pyro.param("q_scale", torch.full_like(x, 0.7), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, scale))
        pyro.sample("s", dist.LogNormal(torch.zeros_like(x), 0.3))


def _value_and_grads(loss):
    pyro.clear_param_store()
    x = torch.linspace(-1.0, 2.0, 6)
    pyro.set_rng_seed(1)
    guide(x)
    model(x)
    params = [pyro.param(n).unconstrained() for n in ("prior_loc", "q_loc", "q_scale")]
    pyro.set_rng_seed(7)
    value = loss(model, guide, x)
    return value.detach(), torch.autograd.grad(value, params)


@pytest.mark.parametrize(
    "elbo, ours",
    [
        (Trace_ELBO(num_particles=3), trace_elbo_loss),
        (TraceMeanField_ELBO(num_particles=2), meanfield_elbo_loss),
        (
            TraceEnum_ELBO(max_plate_nesting=1, num_particles=2, strict_enumeration_warning=False),
            traceenum_elbo_loss,
        ),  # enumerated programs: tests/infer/test_captured_enum.py
    ],
    ids=["trace", "meanfield", "traceenum"],
)
def test_each_capturable_loss_equals_its_pyro_elbos_loss_and_gradients(elbo, ours):
    want, want_grads = _value_and_grads(elbo.differentiable_loss)
    got, got_grads = _value_and_grads(lambda *a: ours(elbo, *a))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert loss_function(elbo).func is ours  # the ELBO's own type picks it


def test_a_guide_site_without_rsample_is_not_capturable():
    def coin_guide(x):
        p = pyro.param("p", torch.tensor(0.4), constraint=constraints.unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(p))

    def coin_model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    pyro.clear_param_store()
    with pytest.raises(NotCapturable, match="'c' is not reparameterised"):
        trace_elbo_loss(Trace_ELBO(), coin_model, coin_guide, torch.zeros(3))


def test_a_subclass_without_the_objective_hook_runs_its_own_differentiable_loss():
    class Doubled(Trace_ELBO):  # changes the loss: Trace_ELBO's parts would be wrong for it
        def differentiable_loss(self, model, guide, *args, **kwargs):
            return 2 * super().differentiable_loss(model, guide, *args, **kwargs)

    elbo = Doubled()
    assert loss_function(elbo) == elbo.differentiable_loss


MASK = torch.tensor([True, False, True, True, False, True])


def masked_model(x):
    with pyro.plate("data", x.shape[0]), poutine.mask(mask=MASK):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def auxiliary_guide(x):
    """q(a) q(z | a): ``a`` is the guide's own (an auxiliary variable the model lacks), and z
    is masked as the model masks it, so its KL counts on the kept rows only."""
    loc = pyro.param("q_loc", 0.1 * x)
    with pyro.plate("data", x.shape[0]):
        a = pyro.sample("a", dist.Normal(torch.zeros_like(x), 0.2), infer={"is_auxiliary": True})
        with poutine.mask(mask=MASK):
            pyro.sample("z", dist.Normal(loc + a, 0.6))


@pytest.mark.parametrize(
    "elbo, ours",
    [(Trace_ELBO(num_particles=2), trace_elbo_loss), (TraceMeanField_ELBO(), meanfield_elbo_loss)],
    ids=["trace", "meanfield"],
)
def test_masked_sites_and_a_guides_own_site_score_as_pyro_scores_them(elbo, ours):
    x = torch.linspace(-1.0, 2.0, 6)

    def value_and_grads(loss):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        value = loss(masked_model, auxiliary_guide, x)
        return value.detach(), torch.autograd.grad(value, [pyro.param("q_loc").unconstrained()])

    want, (want_grad,) = value_and_grads(elbo.differentiable_loss)
    got, (got_grad,) = value_and_grads(lambda *a: ours(elbo, *a))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    assert got_grad[~MASK].abs().max() == 0  # a masked row's z adds nothing
