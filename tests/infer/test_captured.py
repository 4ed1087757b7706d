"""The captured loss: equal to Pyro's eager loss and gradients, and a safe fallback."""

from __future__ import annotations

import json

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.nn import PyroModule
from pyro.poutine.util import prune_subsample_sites
from sklearn.datasets import load_digits

from pyrovae.cli import main
from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer, make_objective
from pyrovae.infer.captured import CapturedLoss
from pyrovae.infer.scale import scale_latents
from pyrovae.models import VAE

QUICK = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet", "--no-figures"]


def binary_digits(n: int = 256) -> torch.Tensor:
    return torch.tensor(load_digits().data[:n] > 7, dtype=torch.float32)


def pair(beta: float = 1.0):
    pyro.set_rng_seed(0)
    return VAE(64, 4, (32,), beta=beta), GaussianEncoder(64, 4, (32,))


def eager_and_replay(loss: CapturedLoss, elbo, model, guide, x: torch.Tensor, seed: int):
    """Pyro's eager loss and the replayed graph's, each with its gradients, on one seed."""
    params = loss._params
    results = []
    for run in (lambda: elbo.differentiable_loss(model, guide, x), lambda: loss(x)):
        torch.manual_seed(seed)
        value = run()
        grads = torch.autograd.grad(value, params, allow_unused=True)
        results.append((value.detach(), grads))
    return results


@pytest.mark.parametrize(
    "objective, particles, beta",
    [("elbo", 1, 1.0), ("elbo", 3, 1.0), ("elbo", 1, 4.0), ("meanfield", 1, 1.0),
     ("meanfield", 2, 0.5), ("iwae", 5, 1.0)],
)  # fmt: skip
def test_the_replayed_graph_gives_pyros_loss_and_gradients(objective, particles, beta):
    model, guide = pair(beta)
    elbo = make_objective(objective, particles)
    scaled_model, scaled_guide = scale_latents(model, guide, model.latent_scales)
    loss = CapturedLoss(elbo, scaled_model, scaled_guide, [model, guide])
    x = binary_digits(32)
    loss(x)  # the first call runs Pyro and captures
    assert list(loss.graphs.values())[0] is not None and loss.enabled
    for seed in range(3):  # fresh noise on every replay, the same as Pyro's for one seed
        (want, want_grads), (got, got_grads) = eager_and_replay(
            loss, elbo, scaled_model, scaled_guide, x, seed
        )
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    first = loss(x)
    assert not torch.equal(first, loss(x))  # the noise is drawn again, not baked in


def test_training_by_default_matches_the_plain_pyro_path():
    """Capture and the fused Adam against eager Pyro steps and the per-tensor Adam."""
    x = binary_digits(512)
    histories, parameters = [], []
    for fast in (True, False):
        model, guide = pair()
        trainer = Trainer(
            model,
            guide,
            x,
            batch_size=100,  # 5 full batches and a last one of 12: two graphs
            seed=0,
            progress=False,
            capture=fast,
            optimizer=None if fast else (lambda p: torch.optim.Adam(p, lr=1e-3)),
        )
        trainer.run(3)
        assert trainer.loss.enabled is fast and len(trainer.loss.graphs) == (2 if fast else 0)
        histories.append(trainer.history.column("train_elbo"))
        parameters.append([p.detach().clone() for p in trainer.params])
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)
    for a, b in zip(*parameters, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class CoinModel(PyroModule):
    """z ~ N(0, 1), c ~ Bernoulli(1/2), x ~ N(z + c, 1): a discrete latent sampled by the guide."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z + c + self.shift, 1.0), obs=x)


class CoinGuide(PyroModule):
    def __init__(self, enumerate_c: bool = False) -> None:
        super().__init__()
        self.infer = {"enumerate": "parallel"} if enumerate_c else {}
        self.loc = torch.nn.Parameter(torch.zeros(()))
        self.logit = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc.expand(x.shape[0]), 1.0))
            c = dist.Bernoulli(logits=self.logit.expand(x.shape[0]))
            pyro.sample("c", c, infer=self.infer)


def test_a_score_function_guide_runs_eagerly_with_the_reason():
    model, guide = CoinModel(), CoinGuide()
    loss = CapturedLoss(Trace_ELBO(), model, guide, [model, guide])
    x = torch.randn(20)
    torch.manual_seed(0)
    first = loss(x)
    torch.manual_seed(0)
    assert torch.equal(first, Trace_ELBO().differentiable_loss(model, guide, x))
    (key,) = loss.graphs
    assert loss.graphs[key] is None and "'c' is not reparameterised" in loss.reasons[key]
    loss(x).backward()  # later steps: eager, without validation
    assert guide.logit.grad is not None


class BranchingGuide(CoinGuide):
    """A guide that reads a value back to Python: its graph would bake in one branch."""

    def forward(self, x):
        if float(x.mean()) > 100:
            raise AssertionError("never taken")
        return super().forward(x)


def test_an_enumerating_program_that_reads_values_falls_back_to_the_eager_steps():
    x = torch.randn(200) + 0.5
    histories = []
    for capture in (True, False):
        model, guide = CoinModel(), BranchingGuide(enumerate_c=True)
        trainer = Trainer(
            model, guide, x, batch_size=50, objective=TraceEnum_ELBO(max_plate_nesting=1),
            progress=False, seed=0, capture=capture,
        )  # fmt: skip
        trainer.run(3)
        histories.append(trainer.history.column("train_elbo"))
        if capture:
            (key,) = trainer.loss.graphs
            assert trainer.loss.graphs[key] is None
            assert "data-dependent" in trainer.loss.reasons[key]
    assert histories[0] == histories[1]


def test_parameters_in_pyros_store_switch_capture_off():
    pyro.clear_param_store()
    x = binary_digits(64)

    def model(x):
        logits = pyro.param("logits", torch.zeros(64))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        pass

    trainer = Trainer(model, guide, x, batch_size=32, progress=False, seed=0)
    assert not trainer.loss.enabled and "modules" in trainer.loss.reason
    trainer.run(1)
    assert not trainer.loss.graphs


class Annealed(VAE):
    """A VAE whose likelihood weight is a Python attribute that a schedule changes."""

    weight = 1.0

    def forward(self, x, y=None):
        with pyro.poutine.scale(scale=self.weight):
            return super().forward(x, y)


def test_a_constant_changed_between_epochs_is_captured_again_for_every_batch_shape():
    pyro.set_rng_seed(0)
    model, guide = Annealed(64, 4, (32,)), GaussianEncoder(64, 4, (32,))
    x = binary_digits(64)
    trainer = Trainer(model, guide, x, batch_size=48, progress=False, seed=0)
    trainer.run(1)
    before = dict(trainer.loss.graphs)
    assert len(before) == 2 and all(g is not None for g in before.values())  # 48 and 16 rows
    model.weight = 0.25  # the schedule's next value: a different loss
    trainer.run(2)  # the epoch's first replay compares, finds the change, drops every graph
    assert set(trainer.loss.graphs) == set(before)
    for key, graph in trainer.loss.graphs.items():
        assert graph is not None and graph is not before[key]
    for rows in (48, 16):  # each shape's new graph gives the new loss
        (want, _), (got, _) = eager_and_replay(
            trainer.loss, trainer.elbo, model, guide, x[:rows], seed=5
        )
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_one_comparison_per_epoch_whatever_the_number_of_batch_shapes(monkeypatch):
    model, guide = pair()
    x = binary_digits(64)
    trainer = Trainer(model, guide, x, batch_size=24, progress=False, seed=0)  # 24, 24, 16
    trainer.run(1)
    calls = []
    for name in ("_eager", "_capture"):
        method = getattr(CapturedLoss, name)
        monkeypatch.setattr(
            CapturedLoss, name,
            lambda self, *a, name=name, method=method: calls.append(name) or method(self, *a),
        )  # fmt: skip
    graphs = dict(trainer.loss.graphs)
    trainer.run(4)
    assert calls == ["_eager"] * 3  # one eager pass per epoch, not one per shape; no capture
    assert trainer.loss.graphs == graphs


def test_a_kl_warmup_changes_the_weight_the_captured_graph_reads_without_a_new_capture():
    """The warm-up weight is a tensor the graph reads: each epoch's replay gives Pyro's loss
    under that epoch's weight, from the graph captured in the first epoch."""
    model, guide = pair()
    x = binary_digits(64)
    trainer = Trainer(model, guide, x, batch_size=64, progress=False, seed=0, kl_warmup=3)
    trainer.run(1)
    (key,) = trainer.loss.graphs
    graph = trainer.loss.graphs[key]
    for epochs, weight in ((2, 0.5), (3, 0.75), (4, 1.0)):
        trainer.run(epochs)
        assert trainer.loss.graphs[key] is graph
        assert trainer.history[-1]["kl_weight"] == weight
        scaled = scale_latents(model, guide, {"z": weight})
        (want, want_grads), (got, got_grads) = eager_and_replay(
            trainer.loss, trainer.elbo, *scaled, x, seed=epochs
        )
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_the_eager_flag_is_saved_with_the_run(tmp_path):
    assert main(["train", "vae", "--out", str(tmp_path / "run"), *QUICK, "--eager"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["capture"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_capture_on_cuda_matches_pyro():
    model, guide = (m.cuda() for m in pair())
    elbo = Trace_ELBO()
    loss = CapturedLoss(elbo, model, guide, [model, guide])
    x = binary_digits(32).cuda()
    loss(x)
    (want, _), (got, _) = eager_and_replay(loss, elbo, model, guide, x, seed=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


class PenalisedELBO(Trace_ELBO):
    """A user's ELBO that adds a term to Trace_ELBO's loss through the ``objective`` hook:
    -ELBO + weight * sum over the guide's sites of the mean of z^2 (a made-up penalty)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def objective(self, base_loss, model, guide, *args):
        trace = prune_subsample_sites(pyro.poutine.trace(guide).get_trace(*args))
        penalty = sum(trace.nodes[name]["value"].pow(2).mean() for name in trace.stochastic_nodes)
        return base_loss(model, guide, *args) + self.weight * penalty

    def differentiable_loss(self, model, guide, *args):
        return self.objective(super().differentiable_loss, model, guide, *args)

    def evaluation_elbo(self):
        return Trace_ELBO()


def test_an_elbo_adding_terms_through_the_objective_hook_is_captured_and_equals_its_eager_loss():
    model, guide = pair()
    elbo = PenalisedELBO(weight=100.0)
    loss = CapturedLoss(elbo, model, guide, [model, guide])
    x = binary_digits(32)
    loss(x)
    assert list(loss.graphs.values())[0] is not None, loss.reasons
    for seed in range(2):
        (want, want_grads), (got, got_grads) = eager_and_replay(loss, elbo, model, guide, x, seed)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        for a, b in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # Without the penalty the graph would be Trace_ELBO's: the hook's term is in it.
    torch.manual_seed(0)
    plain = Trace_ELBO().differentiable_loss(model, guide, x)
    torch.manual_seed(0)
    assert float(loss(x).detach()) > float(plain.detach()) + 50.0  # the penalty is about 100


def test_an_elbo_names_the_bound_its_test_elbo_reports():
    from pyrovae.infer.objectives import evaluation_objective
    from pyrovae.infer.semisupervised import SemiSupervisedELBO

    assert type(evaluation_objective(PenalisedELBO(1.0))) is Trace_ELBO
    enum = evaluation_objective(SemiSupervisedELBO(alpha=5.0, max_plate_nesting=2))
    assert type(enum) is TraceEnum_ELBO and enum.max_plate_nesting == 2
