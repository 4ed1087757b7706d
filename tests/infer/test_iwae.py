import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from sklearn.datasets import load_digits

import pyrovae
from pyrovae.guides import GaussianEncoder
from pyrovae.infer import IWAE_ELBO
from pyrovae.models import VAE


@pytest.fixture
def trained_pair():
    x = torch.tensor(load_digits().data[:300] / 16, dtype=torch.float32)
    model, guide = VAE(64, 4, (64,), "continuous-bernoulli"), GaussianEncoder(64, 4, (64,))
    pyrovae.fit(model, guide, x, epochs=3, seed=0, progress=False)
    return model, guide, x


def test_k1_equals_the_elbo_draw_for_draw(trained_pair):
    model, guide, x = trained_pair
    pyro.set_rng_seed(1)
    elbo = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(1)
    assert IWAE_ELBO(num_particles=1).loss(model, guide, x) == pytest.approx(elbo, rel=1e-6)


def test_bound_increases_with_k(trained_pair):
    model, guide, x = trained_pair
    x, repeats = x[:100], 10
    means, errors = [], []
    for k in (1, 5, 50):
        draws = torch.tensor([-IWAE_ELBO(k).loss(model, guide, x) / len(x) for _ in range(repeats)])
        means.append(draws.mean())
        errors.append(draws.std() / repeats**0.5)
    for i in range(2):
        gap = means[i + 1] - means[i]
        assert gap > 4 * (errors[i] ** 2 + errors[i + 1] ** 2) ** 0.5


def test_dreg_has_the_same_value_and_reaches_every_parameter(trained_pair):
    model, guide, x = trained_pair
    pyro.set_rng_seed(2)
    plain = IWAE_ELBO(10).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(2)
    dreg = IWAE_ELBO(10, dreg=True).differentiable_loss(model, guide, x)
    assert dreg.item() == pytest.approx(plain.item(), rel=1e-6)
    dreg.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in guide.parameters())
    assert all(p.grad is not None for p in model.parameters())


def test_dreg_model_gradient_matches_iwae(trained_pair):
    # For the model's parameters DReG and IWAE use the same estimator sum_k wbar_k grad log p.
    model, guide, x = trained_pair
    grads = []
    for dreg in (False, True):
        model.zero_grad()
        pyro.set_rng_seed(3)
        IWAE_ELBO(10, dreg=dreg).differentiable_loss(model, guide, x).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dreg", [False, True])
def test_fit_and_plain_svi_train_with_iwae(trained_pair, dreg):
    model, guide, x = trained_pair
    history = pyrovae.fit(
        model,
        guide,
        x,
        test_data=x,
        epochs=2,
        objective="iwae",
        num_particles=8,
        dreg=dreg,
        seed=0,
        progress=False,
    )
    assert set(history[-1]) >= {"train_elbo", "test_elbo"}
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), IWAE_ELBO(5, dreg=dreg))
    assert torch.isfinite(torch.tensor(svi.step(x)))


def test_dreg_needs_reparameterised_guide_sites():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", pyro.distributions.Bernoulli(0.5))
            pyro.sample("x", pyro.distributions.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", pyro.distributions.Bernoulli(0.3))

    with pytest.raises(ValueError, match="'c' is not"):
        IWAE_ELBO(3, dreg=True).differentiable_loss(model, guide, torch.zeros(2))
