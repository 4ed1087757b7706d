"""Every option tested by its effect, not its echo: what the trainer computes, what the model
observes, what the run directory holds, for the options a user sets on the command line.

A recording :class:`~pyrovae.infer.Trainer` (patched into the run layer) keeps the trainer a
run built, so a test can evaluate the very loss the run trained on.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

import pyrovae.runs.training
from pyrovae.cli import main
from pyrovae.guides import GaussianEncoder
from pyrovae.infer import IWAE_ELBO, Trainer
from pyrovae.models import VAE
from pyrovae.runs import load_run

QUICK = ["--hidden", "16", "--latent-dim", "2", "--quiet", "--no-figures"]


@pytest.fixture
def trainers(monkeypatch):
    """The trainers that runs build, in order."""
    built: list[Trainer] = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(pyrovae.runs.training, "Trainer", Recording)
    return built


def kl_draw(model, guide, x, seed: int) -> torch.Tensor:
    """sum_n log q(z_n | x_n) - log p(z_n) at the draws that seed gives the guide."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    q, p = guide_trace.nodes["z"], model_trace.nodes["z"]
    return q["fn"].log_prob(q["value"]).sum() - p["fn"].log_prob(p["value"]).sum()


def beta_effect(trainer: Trainer, x: torch.Tensor, beta: float) -> None:
    """The trainer's loss is the ELBO's loss plus (beta - 1) KL, draw for draw."""
    pyro.set_rng_seed(5)
    weighted = trainer.loss(x).item()
    pyro.set_rng_seed(5)
    plain = Trace_ELBO().loss(trainer.model, trainer.guide, x)
    kl = kl_draw(trainer.model, trainer.guide, x, 5).item()
    assert abs(kl) > 1.0, "a KL term large enough to see"
    assert weighted == pytest.approx(plain + (beta - 1) * kl, rel=1e-5, abs=1e-4)


def test_beta_through_fit_weights_the_kl_by_exactly_beta():
    x = torch.rand(64, 16)
    model = VAE(16, 2, (16,), "continuous-bernoulli", beta=4.0)
    trainer = Trainer(model, GaussianEncoder(16, 2, (16,)), x, progress=False, capture=False)
    beta_effect(trainer, x, 4.0)


def test_beta_through_the_cli_weights_the_kl_by_exactly_beta(tmp_path, trainers):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--epochs", "1", "--beta", "3",
                 *QUICK]) == 0  # fmt: skip
    (trainer,) = trainers
    beta_effect(trainer, trainer.batches.peek()[0], 3.0)  # the captured loss, replayed


def test_kl_warmup_through_the_cli_weights_the_kl_by_the_epochs_weight_times_beta(
    tmp_path, trainers
):
    """Epoch e < E weights every latent term by (e + 1) / (E + 1), on top of beta: after two
    epochs of a three-epoch warm-up the loss is the ELBO's plus (3 * 0.5 - 1) KL."""
    out = tmp_path / "r"
    args = ["--epochs", "2", "--beta", "3", "--kl-warmup", "3", *QUICK]
    assert main(["train", "vae", "--out", str(out), *args]) == 0
    (trainer,) = trainers
    beta_effect(trainer, trainer.batches.peek()[0], 3.0 * 0.5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["kl_weight"] for r in metrics["history"]] == [0.25, 0.5]
    assert "warm-up objective" in metrics["units"] and "beta = 3.0" in metrics["units"]


def test_iwae_with_dreg_from_the_cli_trains_on_that_bound_with_those_gradients(tmp_path, trainers):
    args = ["--objective", "iwae", "--particles", "7", "--dreg", "--epochs", "1"]
    assert main(["train", "vae", "--out", str(tmp_path / "r"), *args, *QUICK]) == 0
    (trainer,) = trainers
    x = trainer.batches.peek()[0][:32]
    guide_params = list(trainer.guide.parameters())

    def loss_and_guide_grads(loss_fn):
        pyro.set_rng_seed(9)
        loss = loss_fn(x)
        return loss.item(), torch.autograd.grad(loss, guide_params)

    trained = loss_and_guide_grads(trainer.loss)
    dreg = loss_and_guide_grads(
        lambda x: IWAE_ELBO(7, dreg=True).differentiable_loss(trainer.model, trainer.guide, x)
    )
    plain = loss_and_guide_grads(
        lambda x: IWAE_ELBO(7).differentiable_loss(trainer.model, trainer.guide, x)
    )
    assert trained[0] == pytest.approx(dreg[0], rel=1e-5)  # the K = 7 bound
    for got, want in zip(trained[1], dreg[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not all(torch.allclose(a, b) for a, b in zip(dreg[1], plain[1], strict=True))
    pyro.set_rng_seed(9)
    one_particle = IWAE_ELBO(1).differentiable_loss(trainer.model, trainer.guide, x).item()
    assert trained[0] < one_particle  # a tighter bound than the ELBO: a smaller loss


RECORDER = """
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule, PyroParam

SEEN = []  # the x of every training step (with gradients on)
STEPS = [0]

class Model(PyroModule):
    def __init__(self, d, nan_after=None):
        super().__init__()
        self.logits = PyroParam(torch.zeros(d))
        self.nan_after = nan_after

    def forward(self, x):
        logits = self.logits
        if torch.is_grad_enabled():
            SEEN.append(x.detach().clone())
            STEPS[0] += 1
            if self.nan_after is not None and STEPS[0] > self.nan_after:
                logits = logits + float("inf")  # log p(x) = inf - inf: a NaN loss
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

class Guide(PyroModule):
    def forward(self, x):
        pass

def recorder(input_dim):
    return Model(input_dim), Guide()

def diverging(input_dim):
    # Runs with gradients on: the plate probe, the parameter probe, the step of epoch 1; then
    # the step of epoch 2 (one batch an epoch) diverges.
    return Model(input_dim, nan_after=3), Guide()
"""


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    (tmp_path / "recorder.py").write_text(textwrap.dedent(RECORDER))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import recorder as module

    module = importlib.reload(module)
    return module


def test_dynamic_binarization_draws_new_zeros_and_ones_each_epoch_with_the_grey_mean(
    tmp_path, recorder, capsys
):
    from pyrovae.data import load_dataset

    out = tmp_path / "r"
    args = ["--likelihood", "bernoulli", "--epochs", "2", "--batch-size", "2000", "--eager"]
    args += ["--quiet", "--no-figures"]
    assert main(["train", "recorder:recorder", "--out", str(out), *args]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["binarize"] == "dynamic"
    first, second = recorder.SEEN[-2], recorder.SEEN[-1]  # epochs 1 and 2: every training row
    grey = load_dataset("digits").train_x
    assert first.shape == second.shape == grey.shape
    for epoch in (first, second):
        assert set(epoch.unique().tolist()) == {0.0, 1.0}
        # E[x_bin] = grey level: the mean over all pixels within 4 binomial standard errors.
        se = float((grey * (1 - grey)).sum().sqrt() / grey.numel())
        assert abs(float(epoch.mean() - grey.mean())) < 4 * se
    # New draws each epoch (a fixed threshold would give the same rows again).
    rows = [sorted(map(bytes, epoch.numpy().astype(np.uint8))) for epoch in (first, second)]
    assert rows[0] != rows[1]


@pytest.mark.parametrize(
    ("values", "likelihood", "observed"),
    [
        ("binary", "bernoulli", dist.Bernoulli),
        ("grey", "continuous-bernoulli", dist.ContinuousBernoulli),
        ("real", "gaussian", dist.Normal),
    ],
)
def test_likelihood_auto_picks_the_density_the_data_call_for(
    tmp_path, values, likelihood, observed
):
    rng = np.random.default_rng(0)
    data = {
        "binary": (rng.random((120, 12)) < 0.3).astype(np.float32),
        "grey": rng.random((120, 12)).astype(np.float32),
        "real": rng.normal(size=(120, 12)).astype(np.float32) * 3,
    }[values]
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "r"
    dataset = ["--dataset", str(tmp_path / "data.npy")]
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *dataset, *QUICK]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood"] == likelihood and config["binarize"] == "none"
    run = load_run(out)
    x = run.test_inputs()[:4]
    trace = poutine.trace(run.model).get_trace(x)
    fn = trace.nodes["x"]["fn"]
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    assert type(fn) is observed


def test_grey_mnist_under_auto_is_a_bernoulli_on_dynamically_binarized_images(
    tmp_path, shared_data, trainers
):
    out = tmp_path / "r"
    data = ["--dataset", "mnist", "--data-dir", str(shared_data / "mnist"), "--epochs", "1"]
    args = ["--batch-size", "1000", *data, *QUICK]
    assert main(["train", "vae", "--out", str(out), *args]) == 0
    (trainer,) = trainers
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood"] == "bernoulli" and config["binarize"] == "dynamic"
    batch = next(iter(trainer.batches))[0]
    assert set(batch.unique().tolist()) == {0.0, 1.0}
    trace = poutine.trace(trainer.model).get_trace(batch[:4])
    fn = trace.nodes["x"]["fn"]
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    assert type(fn) is dist.Bernoulli


@pytest.mark.filterwarnings("ignore:Encountered NaN:UserWarning")  # Pyro's, before ours
def test_a_nan_loss_stops_the_run_with_its_message_and_a_finite_checkpoint(
    tmp_path, recorder, capsys
):
    out = tmp_path / "r"
    args = ["--epochs", "3", "--batch-size", "2000", "--eager", "--likelihood", "bernoulli"]
    args += ["--quiet", "--no-figures"]
    assert main(["train", "recorder:diverging", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: the loss became nan at epoch 2")
    assert "Lower the learning rate (--lr)" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1]


def test_lr_decay_steps_adams_rate_down_every_so_many_epochs(tmp_path, trainers):
    """Every Adam step of epoch e runs at lr * decay ** (e // every), and the records say so."""
    out = tmp_path / "r"
    args = ["--epochs", "5", "--lr", "0.01", "--lr-decay", "0.5", "--lr-decay-epochs", "2"]
    used: list[float] = []
    original = torch.optim.Adam.step

    def step(self, *a, **k):
        used.append(float(self.param_groups[0]["lr"]))
        return original(self, *a, **k)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.Adam, "step", step)
        assert main(["train", "vae", "--out", str(out), "--batch-size", "720", *args, *QUICK]) == 0
    (trainer,) = trainers
    steps = len(trainer.batches)
    want = [0.01, 0.01, 0.005, 0.005, 0.0025]
    assert used == pytest.approx([lr for lr in want for _ in range(steps)])
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["lr"] for r in history] == pytest.approx(want)
    assert json.loads((out / "config.json").read_text())["lr_decay"] == 0.5


def test_a_resumed_run_continues_the_lr_decay_where_it_stopped(tmp_path):
    """Three epochs, then resumed to five: the parameters of an uninterrupted five-epoch run
    (a resumed run restarting the schedule from lr would train epochs 4-5 at 0.01)."""
    args = ["--lr", "0.01", "--lr-decay", "0.5", "--lr-decay-epochs", "2", *QUICK]
    assert main(["train", "vae", "--out", str(tmp_path / "a"), "--epochs", "5", *args]) == 0
    assert main(["train", "vae", "--out", str(tmp_path / "b"), "--epochs", "3", *args]) == 0
    assert main(["train", "vae", "--out", str(tmp_path / "b"), "--epochs", "5", "--resume",
                 "--quiet"]) == 0  # fmt: skip
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in "ab")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value)
    assert [r["lr"] for r in b["history"]] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr-decay", "0", "--lr-decay must be in (0, 1], got 0.0"),
        ("--lr-decay", "1.5", "--lr-decay must be in (0, 1], got 1.5"),
        ("--lr-decay-epochs", "0", "--lr-decay-epochs must be at least 1, got 0"),
    ],
)
def test_a_bad_lr_decay_is_one_line_naming_the_option(tmp_path, capsys, flag, value, message):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), flag, value, *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"pyrovae: error: {message}"
    assert not (tmp_path / "r").exists()


def test_a_recipes_own_defaults_are_what_train_uses_and_its_help_shows(capsys):
    """mixture-vae trains 500 epochs at 2e-3 unless told otherwise; vae keeps TrainConfig's."""
    from pyrovae.cli import build_parser
    from pyrovae.runs import config_for
    from pyrovae.runs.config import common_fields
    from pyrovae.runs.registry import every_recipe

    common = {f.name for f in common_fields()}
    for recipe in every_recipe():
        assert set(recipe.defaults) <= common, recipe.name
    parse = build_parser("mixture-vae").parse_args
    assert (parse(["train", "mixture-vae"]).epochs, parse(["train", "mixture-vae"]).lr) == (
        500,
        2e-3,
    )
    assert parse(["train", "mixture-vae", "--lr", "1e-3"]).lr == 1e-3
    assert (build_parser("vae").parse_args(["train", "vae"]).epochs, config_for("vae").lr) == (
        100,
        1e-3,
    )
    assert (config_for("mixture-vae").epochs, config_for("mixture-vae", lr=5e-4).lr) == (500, 5e-4)
    with pytest.raises(SystemExit):
        main(["train", "mixture-vae", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "passes over the training data (default: 500)" in help_text
    assert "Adam learning rate (default: 0.002)" in help_text


def test_every_family_declares_its_code_size_and_widths_one_way():
    """--latent-dim and --hidden are declared by one function each (their own default per
    family), and refused below 1 by the one check of declared minimums."""
    import dataclasses

    from pyrovae.runs.registry import every_recipe

    seen = set()
    for recipe in every_recipe():
        for f in dataclasses.fields(recipe.options):
            if f.name in ("latent_dim", "hidden_dims"):
                seen.add((recipe.name, f.name))
                assert f.metadata.get("minimum") == 1, (recipe.name, f.name)
    assert {name for name, _ in seen} >= {"vae", "adgm", "seqvae", "dmm", "mixture-vae"}


def test_a_declared_minimum_is_checked_for_numbers_and_each_width():
    from pyrovae.runs import config_for

    with pytest.raises(ValueError, match=r"^--hidden must be at least 1 each, got \[8, 0\]$"):
        config_for("vae", hidden_dims=(8, 0)).validate()
    with pytest.raises(ValueError, match=r"^--latent-dim must be at least 1, got 0$"):
        config_for("dmm", latent_dim=0).validate()
    config_for("adgm", latent_dim=1, hidden_dims=(1,)).validate()
