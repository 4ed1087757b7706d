"""Trainer tests written from mutation survivors (benchmarks/mutation.py on infer/fit.py)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrovae.infer import Trainer


class PlainModel(nn.Module):
    """z ~ N(0, 1), x | z ~ N(z, 1), with a beta on z: a plain nn.Module (not a PyroModule)."""

    latent_scales = {"z": 0.5}

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class PlainGuide(nn.Module):
    """q(z | x) = N(a x, 1): ``a`` a bare nn.Parameter, reached only through .parameters()."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.a * x, 1.0))


def test_parameters_of_a_plain_module_behind_the_latent_scales_are_trained():
    # The beta wraps model and guide (scale_latents); the guide's parameter appears in no
    # Pyro trace, so only seeing through the wrapper finds it.
    guide = PlainGuide()
    trainer = Trainer(PlainModel(), guide, torch.randn(256), seed=0, progress=False, lr=0.05)
    assert any(p is guide.a for p in trainer.params)
    trainer.run(20)
    # The weighted objective's optimum: E[log N(x; a x, 1)] - 0.5 E[KL(N(a x, 1) || N(0, 1))]
    # is maximised at a = 1 / (1 + 0.5) = 2/3 (the exact posterior mean's slope is 1/2).
    assert guide.a.item() == pytest.approx(2 / 3, abs=0.08)


def mixture_model(x):
    """c ~ Cat(softmax(logits)), x | c ~ N(mu_c, 1): c left to the model (summed)."""
    logits = pyro.param("logits", torch.zeros(2))
    locs = torch.tensor([-2.0, 2.0])
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(logits=logits))
        pyro.sample("x", dist.Normal(locs[c], 1.0), obs=x)


def empty_guide(x):
    pass


def test_the_test_elbo_of_an_enumerated_model_is_its_exact_log_likelihood():
    # With c summed and nothing in the guide, TraceEnum_ELBO is log p(x) exactly; a test
    # ELBO measured with Trace_ELBO would draw c from its prior and differ.
    pyro.clear_param_store()
    x = torch.cat([torch.randn(60) - 2.0, torch.randn(40) + 2.0])
    trainer = Trainer(mixture_model, empty_guide, x, test_data=x, seed=0, progress=False)
    assert trainer.objective == "enum"
    trainer.run(2)
    logits = pyro.param("logits").detach()
    components = dist.Normal(torch.tensor([-2.0, 2.0]), 1.0).log_prob(x[:, None])
    exact = torch.logsumexp(components + logits.log_softmax(-1), -1).mean().item()
    assert trainer.history[-1]["test_elbo"] == pytest.approx(exact, abs=1e-5)
    assert math.isfinite(trainer.history[-1]["train_elbo"])
