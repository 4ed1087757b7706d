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


def test_the_progress_summary_shows_the_test_elbo_and_every_metric_of_the_epoch():
    from pyrovae.infer.progress import epoch_summary as _summary

    record = {"epoch": 2, "train_elbo": -101.234, "test_elbo": -99.5, "valid_accuracy": 0.8125}
    record["seconds"] = 3.0  # not a metric's: not shown
    assert _summary(record, 5, ["valid_accuracy"]) == (
        "epoch 2/5 elbo -101.23 test -99.50 valid_accuracy 0.8125"
    )
    assert _summary({**record, "ari": 0.51234}, 5, ["ari", "valid_accuracy"]) == (
        "epoch 2/5 elbo -101.23 test -99.50 ari 0.5123 valid_accuracy 0.8125"
    )
    assert _summary({"epoch": 1, "train_elbo": -3.0, "test_elbo": math.nan}, 1) == (
        "epoch 1/1 elbo -3.00"
    )
    assert _summary(
        {"epoch": 1, "train_elbo": -3.0, "valid_accuracy": None}, 1, ["valid_accuracy"]
    ) == ("epoch 1/1 elbo -3.00")


def test_a_diverged_loss_names_the_epoch_and_the_fixes():
    from pyrovae.errors import TrainingDiverged

    class Exploding(PlainModel):
        latent_scales = {}

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)
                pyro.factor("overflow", torch.full_like(x, float("inf")))

    pyro.enable_validation(False)
    try:
        trainer = Trainer(Exploding(), PlainGuide(), torch.randn(8), seed=0, progress=False)
        with pytest.raises(TrainingDiverged) as error:
            trainer.run(1)
    finally:
        pyro.enable_validation(True)
    assert str(error.value) == (
        "the loss became nan at epoch 1; parameters are left at the last finite step. Lower "
        "the learning rate (lr), check the data for extreme values, or use a likelihood "
        "with a floor on its scale."
    )  # a Python caller is told its keyword argument; the command line its option (--lr)


class FakeCuda:
    """torch.cuda as a machine with one initialised GPU would show it to the Trainer."""

    def __init__(self, monkeypatch, available=True, initialized=True):
        self.restored = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialized)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu state"])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.restored.append)


def test_the_cuda_generators_are_saved_and_restored_where_cuda_runs(monkeypatch):
    trainer = Trainer(PlainModel(), PlainGuide(), torch.randn(16), seed=0, progress=False)
    assert "cuda" not in trainer.state_dict()["rng"]  # this CPU machine
    fake = FakeCuda(monkeypatch)
    state = trainer.state_dict()
    assert state["rng"]["cuda"] == ["gpu state"]
    trainer.load_state_dict(state)
    assert fake.restored == [["gpu state"]]


def test_cuda_generators_are_left_alone_where_cuda_is_not_initialised_or_absent(monkeypatch):
    trainer = Trainer(PlainModel(), PlainGuide(), torch.randn(16), seed=0, progress=False)
    state = trainer.state_dict()
    FakeCuda(monkeypatch, available=True, initialized=False)
    assert "cuda" not in trainer.state_dict()["rng"]  # nothing drawn there: nothing to save
    # A checkpoint written on a GPU machine, resumed where there is none.
    state["rng"]["cuda"] = ["gpu state"]
    fake = FakeCuda(monkeypatch, available=False, initialized=False)
    trainer.load_state_dict(state)
    assert fake.restored == []


def test_a_resumed_runs_bar_counts_steps_from_where_it_left_off(capfd):
    # 64 rows in batches of 32: 2 steps per epoch. Resumed after epoch 1 and run to epoch 3,
    # the bar starts at 2 of 6 steps and ends at 6 of 6.
    trainer = Trainer(PlainModel(), PlainGuide(), torch.randn(64), batch_size=32, seed=0)
    trainer.run(1)
    capfd.readouterr()
    trainer.run(3)
    err = capfd.readouterr().err
    final = err.strip().splitlines()[-1]
    assert final.startswith("train: 100%") and " 6/6 " in final, final
    assert ("step/s" in final or "s/step" in final) and "epoch 3/3 elbo" in final, final


def test_a_pair_without_parameters_is_refused_with_the_fix():
    def guide(x):
        pass

    with pytest.raises(ValueError) as error:
        Trainer(fixed_normal_model, guide, torch.randn(8), progress=False)
    assert str(error.value) == (
        "the model and guide have no trainable parameters: nothing to fit. A guide must be a "
        "PyroModule with parameters or call pyro.param / pyro.module."
    )


def fixed_normal_model(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


class ShiftModel(nn.Module):
    """x ~ N(shift, 1): a module's parameter."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "x", dist.Normal(self.shift + pyro.param("offset", torch.zeros(())), 1.0), obs=x
            )


def test_a_parameter_outside_the_modules_switches_capture_off_and_is_trained():
    # "offset" lives in Pyro's store, not in the model's module: a graph would hold it as a
    # constant, so the loss runs eagerly and offset gets its gradient.
    pyro.clear_param_store()
    model = ShiftModel()
    trainer = Trainer(model, empty_guide, torch.randn(64) + 3.0, seed=0, progress=False, lr=0.1)
    assert not trainer.loss.enabled
    assert trainer.loss.reason == (
        "some trained parameters live outside the model's and guide's modules"
    )
    history = trainer.run(30)
    assert pyro.param("offset").item() > 0.5 and model.shift.item() > 0.5
    assert history[-1]["train_elbo"] > history[0]["train_elbo"] + 1.0


# ---- mutation survivors of infer/trainer.py ---------------------------------------------


def parts_model(x):
    """theta ~ N(0, 1) global; x (B, P): x_np ~ N(theta, 1) in a plate "examples" over the
    rows and a plate "parts" over the columns. With B = P both plates have the batch's size
    and hold the observation; only "examples" shrinks with the batch."""
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
    with pyro.plate("examples", x.shape[0], dim=-1), pyro.plate("parts", x.shape[1], dim=-2):
        pyro.sample("x", dist.Normal(theta, 1.0), obs=x.T)


def rows_twice(x):
    """theta ~ N(0, 1); x (B,) observed B times over, in two plates that both follow the
    batch ("examples" and "copies"): only a name tells which holds the examples."""
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
    with pyro.plate("examples", x.shape[0], dim=-1), pyro.plate("copies", x.shape[0], dim=-2):
        pyro.sample("x", dist.Normal(theta, 1.0), obs=x.expand(x.shape[0], x.shape[0]))


def parts_guide(x):
    """q(theta) = Delta(theta_loc): log q = 0, so the ELBO is log p(theta_loc, x)."""
    pyro.sample("theta", dist.Delta(pyro.param("theta_loc", torch.tensor(0.5))))


@pytest.mark.parametrize("loader", [False, True], ids=["tensor", "dataloader"])
def test_a_named_data_plate_scales_the_minibatches_to_the_full_data_elbo(loader):
    """7 rows of 3 parts in minibatches of 3, 3 and 1, data plate "examples" named. At lr 0
    (theta_loc stays 0.5) the epoch's train_elbo is the full-data bound per row,
    [log N(0.5; 0, 1) + sum_np log N(x_np; 0.5, 1)] / 7: each minibatch of B rows scaled
    by 7 / B in the plate "examples", the prior counted once per epoch; unnamed, "examples"
    is found (the plate that shrinks with the batch), to the same number. Two plates that
    both follow the batch are refused unnamed and trained named. A DataLoader (no row count
    of its own) is counted."""
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(5))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), 3) if loader else x
    run = {"batch_size": 3, "lr": 0.0, "seed": 0, "progress": False}
    theta = torch.tensor(0.5)
    joint = dist.Normal(0.0, 1.0).log_prob(theta) + dist.Normal(theta, 1.0).log_prob(x).sum()
    for named in ({"data_plate": "examples"}, {}):
        pyro.clear_param_store()
        trainer = Trainer(parts_model, parts_guide, data, **named, **run)
        assert trainer.subsample_rows == 7 and trainer.program.data_plate == "examples"
        trainer.run(1)
        assert trainer.history[-1]["train_elbo"] == pytest.approx(joint.item() / 7, rel=1e-6)
    rows = torch.randn(7)
    rows = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(rows), 3) if loader else rows
    with pytest.raises(ValueError, match="data_plate"):
        Trainer(rows_twice, parts_guide, rows, **run)
    assert Trainer(rows_twice, parts_guide, rows, data_plate="examples", **run).subsample_rows == 7


class JumpTo(torch.optim.SGD):
    """An optimizer whose every step sets the parameters to 1e20: finite, but a step too far."""

    def step(self, closure=None):
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(1e20)


def overflowing_model(x):
    """x ~ N(w^2 - w^2, 1): at w = 1e20, w^2 overflows float32 and the mean is inf - inf."""
    w = pyro.param("w", torch.zeros(()))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(w * w - w * w, 1.0), obs=x)


def test_outputs_that_overflow_after_a_finite_step_are_reported_as_divergence():
    # Pyro refuses the NaN mean ("Expected parameter loc ..."); the parameters are finite,
    # the loss before the step was finite: the step diverged, and the user is told the fix.
    from pyrovae.errors import TrainingDiverged

    pyro.clear_param_store()
    trainer = Trainer(
        overflowing_model,
        empty_guide,
        torch.randn(8),
        batch_size=4,
        optimizer=lambda params: JumpTo(params, lr=1.0),
        capture=False,
        seed=0,
        progress=False,
    )
    with pytest.raises(TrainingDiverged, match="outputs became NaN or infinite at epoch 1") as e:
        trainer.run(1)
    assert "Lower the learning rate (lr)" in str(e.value)
    assert torch.isfinite(pyro.param("w")).all()


class ModeRecorder(ShiftModel):
    """ShiftModel with dropout on its mean, recording its mode at each call."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.modes: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.modes.append((self.training, self.dropout.training))
        with pyro.plate("data", x.shape[0]):
            loc = self.dropout(self.shift + torch.zeros_like(x))
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def test_a_model_left_in_evaluation_mode_trains_in_training_mode_and_is_put_back():
    # A model evaluated before training (model.eval()) would otherwise train without its
    # dropout; each step runs it in training mode, and its own flags come back after.
    model = ModeRecorder().eval()
    trainer = Trainer(
        model, empty_guide, torch.randn(8), batch_size=4, capture=False, progress=False
    )
    model.modes.clear()
    trainer.run(1)
    assert model.modes and all(mode == (True, True) for mode in model.modes)
    assert not model.training and not model.dropout.training
