"""elbo_terms: the reconstruction and KL terms against closed forms, per step of a masked
sequence model, and the refusals."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.guides import MarkovEncoder, SequenceEncoder
from pyrovae.infer import evaluate_elbo
from pyrovae.infer.terms import elbo_terms
from pyrovae.models import DeepMarkovModel, SequenceVAE


def gaussian_pair(w: float = 0.7, q_loc: float = 0.3, q_scale: float = 0.5):
    """z ~ N(0, 1), x | z ~ N(w z, 1) per value of x (N, 2); q(z | x) = N(q_loc + x_0, q_scale)."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z.unsqueeze(-1), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(q_loc + x[:, 0], q_scale))

    return model, guide


def test_the_terms_match_their_closed_forms_within_their_standard_errors():
    w, q_scale = 0.7, 0.5
    model, guide = gaussian_pair(w=w, q_scale=q_scale)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-1.5, 1.2]])
    k = 4000
    pyro.set_rng_seed(0)
    terms = elbo_terms(model, guide, x, num_samples=k)
    m, s = 0.3 + x[:, 0], torch.tensor(q_scale)
    kl = torch.log(1 / s) + (s**2 + m**2) / 2 - 0.5  # KL(N(m, s^2) || N(0, 1))
    # E_q log N(x_d; w z, 1) = -log(2 pi)/2 - ((x_d - w m)^2 + w^2 s^2) / 2, summed over d
    reconstruction = (
        -torch.log(torch.tensor(2 * torch.pi)) / 2 * 2
        - (((x - w * m.unsqueeze(-1)) ** 2).sum(-1) + 2 * w**2 * s**2) / 2
    )
    # Standard errors of the K-draw means: a few tenths of a nat over sqrt(K).
    torch.testing.assert_close(terms.kl, kl, atol=5 * 1.5 / k**0.5, rtol=0)
    torch.testing.assert_close(terms.reconstruction, reconstruction, atol=5 * 2.0 / k**0.5, rtol=0)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)


def test_the_terms_add_up_to_the_elbo_that_evaluate_elbo_estimates():
    model, guide = gaussian_pair()
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    pyro.set_rng_seed(0)
    terms = elbo_terms(model, guide, x, num_samples=200)
    pyro.set_rng_seed(1)
    elbo = sum(evaluate_elbo(model, guide, x) for _ in range(50)) / 50
    assert float(terms.elbo.mean()) == pytest.approx(elbo, abs=0.05)


def padded(x: torch.Tensor, lengths: torch.Tensor, extra: int = 3) -> torch.Tensor:
    """x with ``extra`` more steps and other 0/1 values past every length."""
    out = torch.cat([x, torch.zeros(x.shape[0], extra, x.shape[2])], 1)
    steps = torch.arange(out.shape[1])
    noise = torch.bernoulli(torch.full_like(out, 0.5))
    return torch.where((steps < lengths.unsqueeze(-1)).unsqueeze(-1), out, noise)


@pytest.mark.parametrize("family", ["seqvae", "dmm"])
def test_padding_changes_neither_term_of_a_sequence_model(family):
    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.full((5, 6, 4), 0.3))
    lengths = torch.tensor([6, 2, 4, 1, 5])
    if family == "seqvae":
        model, guide = SequenceVAE(4, 3, 8), SequenceEncoder(4, 3, 8)
    else:
        model, guide = DeepMarkovModel(4, 3, 8, (8,)), MarkovEncoder(4, 3, 8)
    longer = padded(x, lengths)
    pyro.set_rng_seed(1)
    tight = elbo_terms(model, guide, (x, lengths), num_samples=3)
    pyro.set_rng_seed(1)
    loose = elbo_terms(model, guide, (longer, lengths), num_samples=3)
    if family == "seqvae":  # the same draws of z: the same numbers
        torch.testing.assert_close(loose.kl, tight.kl)
        torch.testing.assert_close(loose.reconstruction, tight.reconstruction)
    else:  # z_t past the end is drawn but masked: the draws differ in count, so in value
        pyro.set_rng_seed(2)
        many_tight = elbo_terms(model, guide, (x, lengths), num_samples=2000)
        pyro.set_rng_seed(3)
        many_loose = elbo_terms(model, guide, (longer, lengths), num_samples=2000)
        torch.testing.assert_close(many_loose.kl, many_tight.kl, atol=0.15, rtol=0.02)
        torch.testing.assert_close(
            many_loose.reconstruction, many_tight.reconstruction, atol=0.15, rtol=0.02
        )
    assert (tight.kl > 0).all()


def test_enumerated_and_global_programs_are_refused_with_the_reason():
    def enumerated(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample(
                "c", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"}
            )
            pyro.sample("x", dist.Normal(c.float(), 1.0), obs=x)

    with pytest.raises(ValueError, match="does not split into a reconstruction and a KL"):
        elbo_terms(enumerated, lambda x: None, torch.zeros(3))

    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def global_guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="global latent"):
        elbo_terms(global_model, global_guide, torch.zeros(3))
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        elbo_terms(global_model, global_guide, torch.zeros(3), num_samples=0)
