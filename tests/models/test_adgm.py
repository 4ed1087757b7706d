"""The auxiliary deep generative models (ADGM and its skip variant SDGM, one guide): the
pair contract, enumeration against the sum over classes by hand with the guide's own draws,
the all-labelled case, the generative path of the SDGM."""

from __future__ import annotations

import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from pyrovae.data import load_dataset
from pyrovae.guides import ADGMGuide
from pyrovae.infer import SemiSupervisedELBO, Trainer, split_labeled
from pyrovae.models import ADGM, SDGM

C, D, L, A = 3, 6, 2, 2


MODELS = {"adgm": ADGM, "sdgm": SDGM}


def small_pair(kind: str = "adgm") -> tuple[ADGM | SDGM, ADGMGuide]:
    model = MODELS[kind](D, num_classes=C, latent_dim=L, aux_dim=A, hidden_dims=(8,))
    guide = ADGMGuide(D, num_classes=C, latent_dim=L, aux_dim=A, hidden_dims=(8,))
    return model, guide


def binary_rows(n: int = 5) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, D), 0.4))


class TestADGMContract(PairContract):
    """On unlabelled rows y is enumerated by the guide (TraceEnum_ELBO); on labelled rows it
    is observed (Trace_ELBO) and the classifier q(y | a, x) is never read."""

    variants = ("adgm-unlabelled", "adgm-labelled", "sdgm-unlabelled", "sdgm-labelled")

    def make_pair(self, variant):
        kind, labels = variant.split("-")
        model, guide = small_pair(kind)
        x = binary_rows(16)
        if labels == "unlabelled":
            return Pair(model, guide, (x,), "enum")
        y = torch.randint(C, (16,))
        return Pair(model, guide, (x, y), "elbo", untouched=("guide.classifier",))


def elbo_by_hand(model: ADGM, guide: ADGMGuide, x: torch.Tensor, seed: int) -> torch.Tensor:
    """sum_n [ -log q(a|x) + sum_y q(y|a,x) (log p(y) p(z_y) p(x|y,z_y) p(a|x,y,z_y)
    - log q(z_y|a,y,x) - log q(y|a,x)) ], with a and one z_y per class the guide's draws
    under enumeration (a shared by the classes)."""
    pyro.set_rng_seed(seed)
    trace = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x)
    a, z = trace.nodes["a"]["value"], trace.nodes["z"]["value"]  # (N, A), (C, N, L)
    assert z.shape == (C, len(x), L)
    loc, scale = guide.auxiliary(x)
    total = -torch.distributions.Normal(loc, scale).log_prob(a).sum(-1)
    log_q_y = guide.class_logits(x, a).log_softmax(-1)  # (N, C)
    for c in range(C):
        y = torch.full((len(x),), c)
        model_trace = poutine.trace(poutine.condition(model, {"z": z[c], "a": a})).get_trace(x, y)
        model_trace.compute_log_prob()
        log_p = sum(model_trace.nodes[s]["log_prob"] for s in ("y", "z", "x", "a"))
        loc, scale = guide.encode(x, y, a)
        log_q_z = torch.distributions.Normal(loc, scale).log_prob(z[c]).sum(-1)
        total = total + log_q_y[:, c].exp() * (log_p - log_q_z - log_q_y[:, c])
    return total.sum()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_enumeration_gives_the_elbo_summed_over_classes_by_hand(kind):
    model, guide = small_pair(kind)
    x = binary_rows()
    pyro.set_rng_seed(3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    expected = -elbo_by_hand(model, guide, x, seed=3)
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    pyro.set_rng_seed(3)  # an unlabelled batch: no classification term
    loss = SemiSupervisedELBO(alpha=10.0).differentiable_loss(model, guide, x)
    assert torch.allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_labelled_batch_is_the_conditional_elbo_and_alpha_adds_a_classification_loss(kind):
    model, guide = small_pair(kind)
    x, y = binary_rows(), torch.tensor([0, 2, 1, 1, 0])
    pyro.set_rng_seed(5)
    plain = Trace_ELBO().differentiable_loss(model, guide, x, y)
    pyro.set_rng_seed(5)
    no_alpha = SemiSupervisedELBO(alpha=0.0).differentiable_loss(model, guide, x, y)
    assert torch.allclose(no_alpha, plain, rtol=1e-6)
    pyro.set_rng_seed(5)
    classification = SemiSupervisedELBO(alpha=1.0).classification_loss(guide, x, y)
    assert classification > 0  # sum_n -log q(y_n | a_n, x_n) at a draw of a


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, seed=0)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_with_every_label_it_trains_as_a_supervised_conditional_model(digits, kind):
    x, y = digits.train_x[:600], digits.train_y[:600]
    data = split_labeled(x, y, num_labels=None)
    pyro.set_rng_seed(0)
    model = MODELS[kind](64, 10, latent_dim=8, aux_dim=8, hidden_dims=(128,),
                         likelihood="continuous-bernoulli")  # fmt: skip
    guide = ADGMGuide(64, 10, latent_dim=8, aux_dim=8, hidden_dims=(128,))
    trainer = Trainer(
        model, guide, data, batch_size=64, objective=SemiSupervisedELBO(alpha=10.0), seed=0,
        progress=False,
    )  # fmt: skip
    assert all(len(batch) == 2 for batch in trainer.batches)
    history = trainer.run(15)
    assert history[-1]["train_elbo"] > history[0]["train_elbo"] + 20
    accuracy = float((guide.predict(digits.test_x) == digits.test_y).float().mean())
    assert accuracy > 0.85


def test_the_sdgm_draws_a_from_z_and_y_and_decodes_x_from_all_three():
    """Site order y, z, a, x; p(a | z, y) reads no x; p(x | a, z, y) changes with a; the
    mean image of generate is the decoder's at a = E[a | z, y]."""
    model, _ = small_pair("sdgm")
    x = binary_rows()
    trace = poutine.trace(model).get_trace(x)
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]
    assert sites == ["y", "z", "a", "x"]
    z, y = torch.randn(4, L), torch.tensor([0, 1, 2, 0])
    prior = model.auxiliary_prior(z, y)
    assert prior.event_shape == (A,) and prior.batch_shape == (4,)
    a = prior.sample()
    assert not torch.allclose(model.decode(z, y, a).mean, model.decode(z, y, a + 1).mean)
    torch.testing.assert_close(model.generate(z, y), model.decode(z, y, prior.mean).mean)
