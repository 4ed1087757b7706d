import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from sklearn.datasets import load_digits

from pyrovae.guides import DeltaEncoder, GaussianEncoder
from pyrovae.infer.scale import scale_latents
from pyrovae.models import VAE


def digits(n=64) -> torch.Tensor:
    return torch.tensor(load_digits().data[:n] / 16, dtype=torch.float32)


class TestVAEContract(PairContract):
    def make_pair(self):
        model = VAE(64, latent_dim=4, hidden_dims=(32,), likelihood="continuous-bernoulli")
        return Pair(model, GaussianEncoder(64, latent_dim=4, hidden_dims=(32,)), (digits(),))


class TestBernoulliConvVAEContract(PairContract):
    def make_pair(self):
        x = (digits() > 0.5).float()
        shape = (1, 8, 8)
        model = VAE(64, 3, (32,), "bernoulli", architecture="conv", image_shape=shape)
        guide = GaussianEncoder(64, 3, (32,), architecture="conv", image_shape=shape)
        return Pair(model, guide, (x,))


class TestGaussianVAEContract(PairContract):
    """Under the plain ELBO and with the KL term in closed form (TraceMeanField_ELBO)."""

    variants = ("elbo", "meanfield")

    def make_pair(self, objective):
        model, guide = VAE(64, 2, (16,), "gaussian"), GaussianEncoder(64, 2, (16,))
        return Pair(model, guide, (digits(),), objective)


class TestAutoencoderContract(PairContract):
    def make_pair(self):
        model = VAE(64, 4, (32,), "continuous-bernoulli")
        return Pair(model, DeltaEncoder(64, 4, (32,)), (digits(),))


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_beta_weights_exactly_the_kl_term(beta):
    """loss(beta) = -E_q log p(x|z) + beta * KL(q || p), with the KL in closed form."""
    x = digits(16)
    model = VAE(64, 3, (16,), "continuous-bernoulli", beta=beta)
    guide = GaussianEncoder(64, 3, (16,))
    scaled_model, scaled_guide = scale_latents(model, guide, model.latent_scales)
    pyro.set_rng_seed(3)
    loss = TraceMeanField_ELBO().loss(scaled_model, scaled_guide, x)

    pyro.set_rng_seed(3)
    z = poutine.trace(guide).get_trace(x).nodes["z"]["value"]  # the same draw as in the loss
    loc, scale = guide.encode(x)
    log_lik = model.decode(z).log_prob(x).sum()
    kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
    assert loss == pytest.approx((-log_lik + beta * kl).item(), rel=1e-5)


def test_beta_must_be_positive():
    with pytest.raises(ValueError, match="beta must be positive"):
        VAE(64, beta=0.0)


def test_conv_networks_need_an_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        VAE(64, architecture="conv")


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 10, 12)])
def test_conv_decoder_output_matches_any_image_size(shape):
    d = shape[0] * shape[1] * shape[2]
    model = VAE(d, 5, (32,), "gaussian", architecture="conv", image_shape=shape)
    z = torch.randn(7, 5)
    assert model.decode(z).event_shape == (d,)
    assert model.decode(z).batch_shape == (7,)
