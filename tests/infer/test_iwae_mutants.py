"""IWAE_ELBO's edges, found by mutation testing (benchmarks/mutation.py): its default K, its
refusals and their messages, and DReG's bound on a model with a plate inside the data plate.

The oracle for the nested-plate model is the bound by hand at the guide's own draws (replayed
with the same seed), float64, to 1e-10: no Monte Carlo tolerance.
"""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae.infer import IWAE_ELBO
from pyrovae.infer.plates import PARTICLES

PIXELS = 3


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


class NestedPair(torch.nn.Module):
    """z_n ~ N(0, 1); x_np ~ N(z_n, 1) for p in a plate of PIXELS inside the data plate;
    q(z_n | x_n) = N(m_n, s) with learnable m (B,) and log s."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.linspace(-0.5, 0.5, batch))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(0.8)))

    @staticmethod
    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0))
            with pyro.plate("pixels", PIXELS, dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(self.loc.unsqueeze(-1), self.log_scale.exp()))


def nested_bound_by_hand(pair: NestedPair, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """sum_n log (1/K) sum_k w_nk at the guide's draws for ``seed``, written out."""
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        trace = poutine.trace(pyro.plate(PARTICLES, k, dim=-3)(pair)).get_trace(x)
        z = trace.nodes["z"]["value"]  # (K, B, 1)
        log_p = dist.Normal(0.0, 1.0).log_prob(z)[..., 0] + dist.Normal(z, 1.0).log_prob(x).sum(-1)
        log_q = dist.Normal(pair.loc.unsqueeze(-1), pair.log_scale.exp()).log_prob(z)[..., 0]
        log_w = log_p - log_q  # (K, B)
    return (torch.logsumexp(log_w, 0) - math.log(k)).sum()


X = torch.tensor(
    [[0.2, -0.4, 1.0], [1.5, 0.7, 2.1], [-1.0, -0.3, 0.0], [0.0, 0.4, -0.8]], dtype=torch.float64
)


@pytest.mark.parametrize("dreg", [False, True])
def test_the_bound_with_a_plate_inside_the_data_plate_is_the_bound_by_hand(dreg):
    pair, k, seed = NestedPair(len(X)), 6, 11
    expected = nested_bound_by_hand(pair, X, k, seed)
    pyro.set_rng_seed(seed)
    loss = IWAE_ELBO(k, dreg=dreg).differentiable_loss(pair.model, pair, X)
    torch.testing.assert_close(-loss, expected, rtol=1e-10, atol=1e-10)
    loss.backward()
    assert pair.loc.grad.abs().min() > 0 and pair.log_scale.grad.abs() > 0


def test_the_default_bound_has_five_particles():
    pair = NestedPair(len(X))
    assert IWAE_ELBO().num_particles == 5
    pyro.set_rng_seed(4)
    loss = IWAE_ELBO().loss(pair.model, pair, X)
    assert loss == pytest.approx(-nested_bound_by_hand(pair, X, 5, 4).item(), rel=1e-12)


def test_fewer_than_one_particle_is_refused():
    with pytest.raises(ValueError, match="^num_particles must be at least 1, got 0$"):
        IWAE_ELBO(0)


def test_keyword_arguments_are_refused():
    pair = NestedPair(len(X))
    message = "^IWAE_ELBO passes positional arguments only to model and guide$"
    with pytest.raises(TypeError, match=message):
        IWAE_ELBO(2).differentiable_loss(pair.model, pair, x=X)


def test_pyros_per_particle_traces_are_refused():
    """Pyro's ELBO machinery would trace particle by particle; IWAE_ELBO weighs them at once."""
    pair = NestedPair(len(X))
    message = "^IWAE_ELBO weighs all particles in one vectorized pass$"
    with pytest.raises(NotImplementedError, match=message):
        next(IWAE_ELBO(2)._get_traces(pair.model, pair, (X,), {}))


def test_dreg_refuses_a_guide_site_without_rsample_saying_why():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.3))

    message = (
        "dreg=True needs reparameterised guide sites, and 'c' is not (its distribution has "
        "no rsample): train with dreg=False"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        IWAE_ELBO(3, dreg=True).differentiable_loss(model, guide, torch.zeros(2))


def test_dreg_refuses_a_latent_the_guide_does_not_draw_saying_which():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            w = pyro.sample("w", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z + w, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 1.0))

    message = (
        "dreg=True needs every latent site drawn by the guide by reparameterisation; the model "
        "has sites the guide does not draw (['w']): train with dreg=False"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        IWAE_ELBO(3, dreg=True).differentiable_loss(model, guide, torch.zeros(2))
    assert math.isfinite(IWAE_ELBO(3).loss(model, guide, torch.zeros(2)))  # plain IWAE weighs it


class OuterPlatePair(torch.nn.Module):
    """The data plate inside another: for rows x (B, V), z_nv ~ N(0, 1), x_nv ~ N(z_nv, 1)
    with the V views in a plate at dim -2 *outside* the data plate (dim -1);
    q(z_nv) = N(m_v, s). Each example's weight multiplies over its views."""

    def __init__(self, views: int) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.linspace(-0.3, 0.6, views).unsqueeze(-1))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1.2)))

    @staticmethod
    def model(x: torch.Tensor) -> None:
        with pyro.plate("views", x.shape[1], dim=-2), pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x.T)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("views", x.shape[1], dim=-2), pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()))


@pytest.mark.parametrize("dreg", [False, True])
def test_the_bound_with_the_data_plate_inside_another_plate_is_the_bound_by_hand(dreg):
    pair, k, seed = OuterPlatePair(X.shape[1]), 5, 2  # B = 4 rows, V = 3 views
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        trace = poutine.trace(pyro.plate(PARTICLES, k, dim=-3)(pair)).get_trace(X)
        z = trace.nodes["z"]["value"]  # (K, V, B)
        log_p = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X.T)
        log_q = dist.Normal(pair.loc, pair.log_scale.exp()).log_prob(z)
        log_w = (log_p - log_q).sum(1)  # (K, B): over the views
        expected = (torch.logsumexp(log_w, 0) - math.log(k)).sum()
    pyro.set_rng_seed(seed)
    loss = IWAE_ELBO(k, dreg=dreg).differentiable_loss(pair.model, pair, X)
    torch.testing.assert_close(-loss, expected, rtol=1e-10, atol=1e-10)
