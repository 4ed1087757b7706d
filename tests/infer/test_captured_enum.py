"""The captured TraceEnum_ELBO loss: Pyro's loss and gradients, replayed without Pyro."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from hmm import HMM
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule
from sklearn.datasets import load_digits

from pyrovae.guides import GaussianEncoder, SSVAEGuide
from pyrovae.infer import SemiSupervisedELBO, Trainer
from pyrovae.infer.captured import CapturedLoss
from pyrovae.infer.enum_loss import common_scale, traceenum_elbo_loss
from pyrovae.models import SSVAE, GaussianMixture, MixturePriorVAE
from pyrovae.models.mixture import empty_guide

PARALLEL = {"enumerate": "parallel"}


def binary_digits(n: int) -> torch.Tensor:
    return torch.tensor(load_digits().data[:n] > 7, dtype=torch.float32)


class CoinModel(PyroModule):
    """z ~ N(0, 1), c ~ Cat(w), x ~ N(z + c, 1): c enumerated in the guide."""

    def __init__(self, probs=(0.5, 0.5)) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(()))
        self.probs = torch.tensor(probs)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            c = pyro.sample("c", dist.Categorical(self.probs))
            pyro.sample("x", dist.Normal(z + c + self.shift, 1.0), obs=x)


class CoinGuide(PyroModule):
    def __init__(self, logits=(0.0, 0.0)) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc.expand(x.shape[0]), 1.0))
            pyro.sample("c", dist.Categorical(logits=self.logits), infer=PARALLEL)


class EmptyGuide(PyroModule):
    def forward(self, x):
        pass


def ssvae_pair():
    pyro.set_rng_seed(0)
    return SSVAE(64, 10, 4, (32,)), SSVAEGuide(64, 10, 4, (32,))


def mixture_pair():
    pyro.set_rng_seed(0)
    return GaussianMixture(3, 2, "full"), empty_guide


def cases():
    """(name, model, guide, elbo, args): guide-side, model-side and labelled enumeration."""
    pyro.clear_param_store()  # PyroModule's parameters live in Pyro's global store
    torch.manual_seed(0)
    x = torch.randn(40) + 0.5
    x2 = torch.randn(50, 2)
    hmm_x = torch.randn(20, 6)
    digits = binary_digits(30)
    labels = torch.arange(30) % 10
    ssvae = ssvae_pair()
    return [
        ("guide-enumerated", CoinModel(), CoinGuide(), TraceEnum_ELBO(max_plate_nesting=1), (x,)),
        ("gaussian-mixture", *mixture_pair(), TraceEnum_ELBO(max_plate_nesting=1), (x2,)),
        ("hmm-markov", HMM(), EmptyGuide(), TraceEnum_ELBO(max_plate_nesting=1), (hmm_x,)),
        ("ssvae-unlabelled", *ssvae, SemiSupervisedELBO(alpha=10.0), (digits,)),
        ("ssvae-labelled", *ssvae, SemiSupervisedELBO(alpha=10.0), (digits, labels)),
        (
            "two-particles",
            CoinModel(),
            CoinGuide(),
            TraceEnum_ELBO(max_plate_nesting=1, num_particles=2),
            (x,),
        ),
    ]


def modules_of(model, guide):
    return [p for p in (model, guide) if isinstance(p, torch.nn.Module)]


@pytest.mark.parametrize("case", range(6))
def test_the_replayed_enum_graph_gives_pyros_loss_and_gradients(case):
    name, model, guide, elbo, args = cases()[case]
    loss = CapturedLoss(elbo, model, guide, modules_of(model, guide))
    loss(*args)  # Pyro's step, then capture and check
    (graph,) = loss.graphs.values()
    assert graph is not None, loss.reasons
    params = loss._params
    for seed in range(3):
        results = []
        for run in (lambda: elbo.differentiable_loss(model, guide, *args), lambda: loss(*args)):
            torch.manual_seed(seed)
            value = run()
            grads = torch.autograd.grad(value, params, allow_unused=True)
            results.append((value.detach(), grads))
        (want, want_grads), (got, got_grads) = results
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        for g, w in zip(got_grads, want_grads, strict=True):
            if w is None:
                assert g is None or not g.abs().any()
            else:
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_a_class_with_probability_zero_adds_nothing_and_no_nan():
    # q(c = 2) = 0 and p(c = 2) = 0, so log p(c = 2) - log q(c = 2) is -inf + inf = NaN at
    # weight 0: Pyro drops such entries (masked_select); the branch-free Dice must give the
    # same loss and gradients, finite.
    model = CoinModel(probs=(0.5, 0.5, 0.0))
    guide = CoinGuide(logits=(0.0, 0.0, -float("inf")))
    x = torch.randn(30)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    torch.manual_seed(0)
    want = elbo.differentiable_loss(model, guide, x)
    torch.manual_seed(0)
    got = traceenum_elbo_loss(elbo, model, guide, x)
    assert torch.isfinite(want)
    torch.testing.assert_close(got, want)
    params = [model.shift, guide.loc, guide.logits]
    want_grads, got_grads = torch.autograd.grad(want, params), torch.autograd.grad(got, params)
    for w, g in zip(want_grads, got_grads, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name", ["gaussian-mixture", "hmm-markov", "ssvae-unlabelled"])
def test_training_with_the_captured_enum_loss_matches_eager_training(name):
    histories = []
    for capture in (True, False):
        (case,) = [c for c in cases() if c[0] == name]
        _, model, guide, elbo, args = case
        trainer = Trainer(
            model, guide, args[0], batch_size=10, objective=elbo, seed=0, progress=False,
            capture=capture, lr=1e-2,
        )  # fmt: skip
        trainer.run(3)
        if capture:
            assert trainer.loss.enabled and all(g is not None for g in trainer.loss.graphs.values())
        histories.append(trainer.history.column("train_elbo"))
    assert histories[0] == pytest.approx(histories[1], rel=1e-4)


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_a_scaled_enumerated_program_is_captured_and_replays_pyros_loss(scale):
    """A Gaussian mixture (c enumerated by the model) under a float poutine.scale, as a
    subsampled data plate scales it (N / B): the graph is captured, with no fallback to
    eager steps (no reason recorded), and replays Pyro's scaled loss and gradients."""
    model, guide = mixture_pair()
    scaled = poutine.scale(model, scale=scale)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = CapturedLoss(elbo, scaled, guide, [model])
    loss(x)  # Pyro's step, then capture and check
    assert not loss.reasons, loss.reasons
    (graph,) = loss.graphs.values()
    assert graph is not None
    want = elbo.differentiable_loss(scaled, guide, x)
    got = loss(x)
    unscaled = elbo.differentiable_loss(model, guide, x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(want, scale * unscaled, rtol=1e-6, atol=1e-5)
    grads = [torch.autograd.grad(v, loss._params) for v in (got, want)]
    for g, w in zip(*grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


class GlobalShiftModel(PyroModule):
    """g ~ N(0, 1) global, c ~ Cat(0.3, 0.7), x ~ N(g + c + shift, 1) per row."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(torch.tensor([0.3, 0.7])))
            pyro.sample("x", dist.Normal(g + c + self.shift, 1.0), obs=x)


class SequentialClassGuide(PyroModule):
    """q(g) = N(loc, 1); q(c) = Cat(softmax(logits)) enumerated sequentially in the plate."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(0.2))
        self.logits = torch.nn.Parameter(torch.tensor([0.1, -0.4]))

    def forward(self, x):
        pyro.sample("g", dist.Normal(self.loc, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "c", dist.Categorical(logits=self.logits), infer={"enumerate": "sequential"}
            )


def test_a_sequentially_enumerated_guide_site_is_captured_with_its_weight():
    """c enumerated sequentially by the guide: one trace per value, so the global site's
    cost, outside c's plate, is counted in each and weighted 1 / 2 (Pyro's Dice). The graph
    is captured with no fallback and replays Pyro's loss and gradients."""
    model, guide = GlobalShiftModel(), SequentialClassGuide()
    x = torch.randn(40, generator=torch.Generator().manual_seed(0)) + 0.5
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = CapturedLoss(elbo, model, guide, [model, guide])
    loss(x)  # Pyro's step, then capture and check
    assert not loss.reasons, loss.reasons
    (graph,) = loss.graphs.values()
    assert graph is not None
    for seed in range(2):
        values = []
        for run in (lambda: elbo.differentiable_loss(model, guide, x), lambda: loss(x)):
            torch.manual_seed(seed)
            value = run()
            values.append((value.detach(), torch.autograd.grad(value, loss._params)))
        (want, want_grads), (got, got_grads) = values
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_the_mixture_vae_under_kl_warm_up_is_captured_and_reads_the_weight():
    """c enumerated by the model, every latent scaled by the warm-up weight, a tensor (0.5,
    then 1): Pyro's check of one common scale reads it back, the captured loss does not. The
    graph captured in the first epoch is replayed in the second, with no fallback, and gives
    Pyro's loss at each epoch's weight."""
    torch.manual_seed(3)
    model = MixturePriorVAE(12, 3, 2, (8,), covariance="diag")
    guide = GaussianEncoder(12, 2, (8,))
    x = (torch.rand(32, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    trainer = Trainer(model, guide, x, batch_size=32, kl_warmup=1, seed=0, progress=False)
    graphs = []
    for epochs, weight in ((1, 0.5), (2, 1.0)):
        trainer.run(epochs)
        assert trainer.history[-1]["kl_weight"] == weight
        assert trainer.loss.enabled and not trainer.loss.reasons, trainer.loss.reasons
        graphs += list(trainer.loss.graphs.values())
        values = []
        for run in (
            lambda: trainer.elbo.differentiable_loss(trainer._model, trainer._guide, x),
            lambda: trainer.loss(x),
        ):
            torch.manual_seed(epochs)
            values.append(run().detach())
        torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-4)
    assert graphs[0] is not None and graphs[0] is graphs[1]


def test_the_common_scale_of_enumerated_sites_is_checked_without_reading_tensors():
    weight = torch.tensor(0.5)
    assert common_scale([2.0, 2.0]) == 2.0
    assert common_scale([weight * 1.0, weight * 1.0]) == 0.5
    for scales, message in (
        ([1.0, 2.0], "share a common poutine.scale"),
        ([1.0, weight], "share a common poutine.scale"),
        ([torch.ones(3)], "only supports scalar"),
    ):
        with pytest.raises(ValueError, match=message):
            common_scale(scales)
