"""The CLI end to end, as a user runs it (in process for speed, one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from images import assert_png

from pyrovae.cli import main
from pyrovae.runs import load_run

FIGURES = {
    "elbo.png",
    "samples.png",
    "reconstructions.png",
    "traversals.png",
    "interpolation.png",
    "latent_space.png",
}
QUICK = ["--epochs", "2", "--hidden", "32", "--latent-dim", "3", "--quiet"]


def train(out: Path, *extra: str) -> int:
    return main(["train", "vae", "--out", str(out), *QUICK, *extra])


def test_train_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    assert train(out) == 0
    assert {p.name for p in out.iterdir()} == {
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "figures",
        ".lock",  # the lock a training process holds (released when it exits)
    }
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood"] == "continuous-bernoulli" and config["binarize"] == "none"
    assert config["input_dim"] == 64 and config["image_shape"] == [1, 8, 8]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "nats per example" in metrics["units"]
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert all(np.isfinite([r["train_elbo"], r["test_elbo"]]).all() for r in metrics["history"])
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES
    for name in FIGURES:
        assert_png(out / "figures" / name)
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"


def test_train_says_which_likelihood_it_picked(tmp_path, capsys):
    main(
        [
            "train",
            "vae",
            "--out",
            str(tmp_path / "r"),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--no-figures",
        ]
    )
    out = capsys.readouterr().out
    assert "likelihood: continuous-bernoulli" in out
    assert "data: digits, 1437 train / 360 test" in out


def test_console_script_runs_as_installed(tmp_path):
    script = Path(sys.executable).with_name("pyrovae")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pyrovae.cli"]
    out = tmp_path / "run"
    result = subprocess.run(
        [
            *command,
            "train",
            "vae",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--no-figures",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "train" in result.stderr  # the tqdm progress bar
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


COMMON = ["--out", "--dataset", "--data-dir", "--epochs", "--batch-size", "--lr", "--seed",
          "--device", "--resume", "--overwrite", "--no-figures"]  # fmt: skip


def test_help_explains_every_option_and_each_model_shows_its_own(capsys):
    text = help_text(capsys, "train")
    for option in COMMON:
        assert option in text
    for model in ("vae", "ae", "gmm", "ssvae", "package.module:function"):
        assert model in text
    assert "--latent-dim LATENT_DIM" not in text and "--components COMPONENTS" not in text
    vae = help_text(capsys, "train", "vae")
    for option in [*COMMON, "--latent-dim", "--likelihood", "--beta", "--hidden", "--objective"]:
        assert option in vae
    assert "--components COMPONENTS" not in vae and "--num-labels NUM_LABELS" not in vae
    gmm = help_text(capsys, "train", "--epochs", "3", "gmm")  # options before MODEL
    assert "--components" in gmm and "--covariance" in gmm and "--inference" in gmm
    assert "--latent-dim LATENT_DIM" not in gmm and "--objective" not in gmm  # EM or enum
    ssvae = help_text(capsys, "train", "ssvae")
    assert "--num-labels" in ssvae and "--alpha" in ssvae and "--architecture {" not in ssvae
    assert "--beta" in help_text(capsys, "train", "mymodule:make")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train" in capsys.readouterr().out


def test_an_option_of_another_model_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "gmm", "--latent-dim", "3"])
    assert e.value.code == 2
    assert "unrecognized arguments: --latent-dim 3" in capsys.readouterr().err


def test_resume_reaches_the_same_numbers_as_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(straight, "--epochs", "3", "--no-figures") == 0
    assert train(split, "--epochs", "2", "--no-figures") == 0
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                str(split),
                "--epochs",
                "3",
                "--resume",
                "--quiet",
                "--no-figures",
            ]
        )
        == 0
    )

    def numbers(run):
        history = json.loads((run / "metrics.json").read_text())["history"]
        return [(r["epoch"], r["train_elbo"], r["test_elbo"]) for r in history]

    assert numbers(split) == numbers(straight)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])


def test_existing_run_is_never_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--no-figures") == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert train(out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert train(out, "--overwrite", "--seed", "1", "--no-figures") == 0
    assert (out / "checkpoint.pt").read_bytes() != before


def test_resume_past_the_end_asks_for_more_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    train(out, "--no-figures")
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 2
    assert "already trained 2 epochs" in capsys.readouterr().err


def test_sample_and_plot_from_a_saved_run(tmp_path):
    out = tmp_path / "run"
    train(out, "--no-figures")
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "--n", "16", "--out", str(grid)]) == 0
    assert_png(grid, grid=(4, 4))
    assert main(["plot", str(out)]) == 0
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES


def test_load_run_restores_the_trained_pair(tmp_path):
    out = tmp_path / "run"
    train(out, "--no-figures")
    run = load_run(out)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, saved["model"][key])
    assert len(run.history) == 2


def test_autoencoder_and_conv_vae_train(tmp_path):
    assert main(["train", "ae", "--out", str(tmp_path / "ae"), *QUICK]) == 0
    assert (
        main(["train", "vae", "--out", str(tmp_path / "conv"), "--architecture", "conv", *QUICK])
        == 0
    )
    assert_png(tmp_path / "conv" / "figures" / "traversals.png")
    assert_png(tmp_path / "ae" / "figures" / "reconstructions.png")


def test_an_autoencoder_evaluation_reports_the_joint_at_its_code_not_log_p_x(tmp_path, capsys):
    """A point-mass guide gives no importance-sampled log p(x): evaluate says what it
    computes, log p(x, z = f(x)), exactly (no draws), and leaves log p(x) null."""
    out = tmp_path / "ae"
    assert main(["train", "ae", "--out", str(out), *QUICK, "--no-figures"]) == 0
    assert main(["evaluate", str(out), "--num-samples", "7", "--quiet"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["test_log_likelihood"] is None and report["test_elbo"] is None
    assert report["estimand"].startswith("log p(x, z = f(x))")
    joint = report["test_reconstruction"] + report["test_log_prior_at_code"]
    assert report["test_log_joint"] == pytest.approx(joint, rel=1e-6)
    assert "not estimated" in capsys.readouterr().out
    run = load_run(out)
    x = run.test_inputs()
    run.model.eval(), run.guide.eval()
    with torch.no_grad():
        z = run.guide.net(x)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        expected = run.model.decode(z).log_prob(x) + prior
    assert float(expected.mean()) == pytest.approx(report["test_log_joint"], rel=1e-5)


USER_MODULE = '''
import pyro, pyro.distributions as dist, torch
from pyro.nn import PyroModule

class Model(PyroModule):
    """p(z) = N(0, I), x ~ N(W z, 0.1^2 I): a linear-Gaussian model, sites named freely."""
    def __init__(self, d, k):
        super().__init__()
        self.linear = torch.nn.Linear(k, d)
        self.k = k
    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("code", dist.Normal(x.new_zeros(x.shape[0], self.k), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(self.linear(z), 0.1).to_event(1), obs=x)

class Guide(PyroModule):
    def __init__(self, d, k):
        super().__init__()
        self.net = torch.nn.Linear(d, 2 * k)
        self.k = k
    def forward(self, x):
        loc, raw = self.net(x).split(self.k, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("code", dist.Normal(loc, torch.nn.functional.softplus(raw)).to_event(1))

def make(input_dim, latent_dim):
    return Model(input_dim, latent_dim), Guide(input_dim, latent_dim)

def make_with_data():
    x = torch.randn(300, 2) @ torch.randn(2, 16)
    return Model(16, 2), Guide(16, 2), x

def make_classic(input_dim):
    """Pyro's classic style: plain functions, parameters in the param store, free site names."""
    decoder = torch.nn.Linear(2, input_dim)
    encoder = torch.nn.Linear(input_dim, 4)

    def model(x):
        pyro.module("decoder", decoder)
        noise = pyro.param("noise", torch.tensor(0.3), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(decoder(z), noise).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        loc, raw = encoder(x).split(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(loc, torch.nn.functional.softplus(raw)).to_event(1))

    return model, guide


def wrong():
    return "not a pair"

def not_callable():
    return 1, 2
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def test_user_factory_trains_from_the_cli(tmp_path, user_module):
    out = tmp_path / "user"
    assert main(["train", f"{user_module}:make", "--out", str(out), *QUICK]) == 0
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES
    assert (
        main(["train", f"{user_module}:make_with_data", "--out", str(tmp_path / "own"), *QUICK])
        == 0
    )
    config = json.loads((tmp_path / "own" / "config.json").read_text())
    assert config["input_dim"] == 16 and config["image_shape"] == [1, 4, 4]


def test_a_factory_run_with_its_own_data_reopens_on_the_same_rows(tmp_path, user_module):
    """make_with_data draws new random rows at every call: evaluate, plot, sample and
    --resume must use the rows the run trained on, kept in the run directory."""
    import importlib

    import pyro

    out = tmp_path / "own"
    assert main(["train", f"{user_module}:make_with_data", "--out", str(out), *QUICK]) == 0
    with np.load(out / "factory_data.npz", allow_pickle=False) as saved:
        train_x, test_x = saved["train_x"], saved["test_x"]
    assert train_x.shape == (240, 16) and test_x.shape == (60, 16)
    spec = f"{user_module}:make_with_data"  # reopening a factory run: the user names it
    run = load_run(out, factory=spec)
    np.testing.assert_array_equal(run.data.train_x.numpy(), train_x)
    np.testing.assert_array_equal(run.test_inputs().numpy(), test_x)
    again = importlib.import_module(user_module).make_with_data()[2]
    assert not np.allclose(again.numpy()[:5], train_x[:5])  # a new call gives other rows
    assert main(["evaluate", str(out), "--num-samples", "5", "--quiet", "--factory", spec]) == 0
    assert json.loads((out / "eval.json").read_text())["num_examples"] == 60
    args = ["--out", str(out), *QUICK, "--epochs", "3", "--resume"]
    pyro.clear_param_store()  # as in a new process: these PyroModules keep Pyro's store
    assert main(["train", f"{user_module}:make_with_data", *args]) == 0
    np.testing.assert_array_equal(load_run(out, factory=spec).data.train_x.numpy(), train_x)


def test_classic_style_factory_trains_and_its_param_store_is_restored(tmp_path, user_module):
    import pyro

    out = tmp_path / "classic"
    assert main(["train", f"{user_module}:make_classic", "--out", str(out), *QUICK]) == 0
    trained = pyro.param("noise").item()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["params"]
    assert set(saved) >= {"noise", "decoder$$$weight", "encoder$$$weight"}
    pyro.clear_param_store()
    load_run(out, factory=f"{user_module}:make_classic")
    assert pyro.param("noise").item() == pytest.approx(trained)
    assert torch.equal(pyro.get_param_store()["decoder$$$weight"], saved["decoder$$$weight"])
    named = ["--factory", f"{user_module}:make_classic"]
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "s.png"), *named]) == 0


def test_user_factory_runs_in_a_subprocess_from_its_own_directory(tmp_path):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(USER_MODULE))
    script = Path(sys.executable).with_name("pyrovae")
    if not script.exists():
        pytest.skip("the pyrovae command is not installed beside this Python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # found from cwd alone

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(script), *command], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=300,
        )  # fmt: skip

    result = run("train", "my_models:make", "--out", "r", *QUICK)
    assert result.returncode == 0, result.stderr
    # Reopening imports the factory only from the installed environment or --factory-path,
    # never from the working directory by itself; it says which file it imported.
    refused = run("evaluate", "r", "--num-samples", "4")
    assert refused.returncode == 2 and "--factory-path" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    result = run("evaluate", "r", "--num-samples", "4", "--factory-path", ".")
    assert result.returncode == 0, result.stderr
    assert f"importing the factory my_models:make from {tmp_path / 'my_models.py'}" in result.stderr
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert report["num_samples"] == 4 and report["num_examples"] == 360
    assert np.isfinite(report["test_log_likelihood"])


def test_a_factory_run_says_the_likelihood_setting_only_prepares_the_data(
    tmp_path, capsys, user_module
):
    out = tmp_path / "r"
    assert main(["train", f"{user_module}:make", "--out", str(out), *QUICK[:-1]]) == 0
    printed = capsys.readouterr().out
    assert "factory's model, which brings its own density: used as they are" in printed
    assert "values in [0, 1]" in printed and "pass --likelihood bernoulli" in printed
    # Not told a likelihood it does not have (issue 36): only what was done to the data.
    assert "likelihood: continuous-bernoulli" not in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nosuchmodel"], "unknown model 'nosuchmodel'. Built-in models: vae, ae, gmm"),
        (["train", "no_such_module_xyz:make"], "cannot import 'no_such_module_xyz'"),
        (["train", "my_models:missing"], "has no callable 'missing'"),
        (["train", "my_models:wrong"], "returned str; it must return a tuple"),
        (
            ["train", "my_models:not_callable"],
            "returned a model of type int, which is not callable",
        ),
        (
            ["train", "vae", "--dataset", "mnist", "--data-dir", "{tmp}/nowhere"],
            "train-images-idx3-ubyte",
        ),
        (
            ["train", "vae", "--likelihood", "bernoulli", "--binarize", "none"],
            "Bernoulli likelihood needs binary data",
        ),
        (["train", "vae", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "vae", "--beta", "-1"], "--beta must be positive"),
        (["train", "vae", "--resume"], "holds no checkpoint"),
        (["train", "vae", "--dataset", "{tmp}/nan.npy"], "NaN"),
        (["train", "vae", "--dataset", "{tmp}/flat.npy"], "1-D"),
        (["train", "vae", "--device", "cuda:7"], "CUDA is not available"),
        (["sample", "{tmp}/nowhere"], "not a pyrovae run"),
    ],
)
def test_bad_input_gets_a_clear_error_and_leaves_nothing(
    tmp_path, user_module, capsys, args, message
):
    if torch.cuda.is_available() and "cuda:7" in args:
        pytest.skip("this machine has CUDA")
    bad = np.random.default_rng(0).random((50, 64))
    bad[3, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "flat.npy", np.ones(10))
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "train":
        args += [
            "--out",
            str(out),
            "--epochs",
            args[args.index("--epochs") + 1] if "--epochs" in args else "1",
            "--quiet",
        ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error:") and message in err
    assert "Traceback" not in err
    assert not out.exists(), "a failed run must not leave a run directory"


def test_grey_mnist_is_binarized_dynamically(tmp_path, shared_data, capsys):
    out = tmp_path / "mnist"
    code = main(
        [
            "train",
            "vae",
            "--dataset",
            "mnist",
            "--data-dir",
            str(shared_data / "mnist"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "500",
            "--hidden",
            "64",
            "--latent-dim",
            "5",
            "--no-figures",
            "--quiet",
        ]
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood"] == "bernoulli" and config["binarize"] == "dynamic"
    assert config["image_shape"] == [1, 28, 28]
    test_elbo = json.loads((out / "metrics.json").read_text())["history"][0]["test_elbo"]
    assert -250 < test_elbo < -80  # nats per image after one short epoch on binarized MNIST


def test_an_interrupt_keeps_the_last_epoch_and_resume_finishes_the_run(
    tmp_path, monkeypatch, capsys
):
    from pyrovae.infer import Trainer

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train(straight, "--epochs", "3", "--no-figures") == 0
    real_step = Trainer.step

    def step(self, args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_step(self, args)

    monkeypatch.setattr(Trainer, "step", step)
    loud = ["--epochs", "3", "--hidden", "32", "--latent-dim", "3", "--no-figures"]
    assert main(["train", "vae", "--out", str(interrupted), *loud]) == 130
    hint = capsys.readouterr().out
    assert "holds epoch 2" in hint and "--resume" in hint
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert not list(interrupted.rglob("*.tmp"))
    monkeypatch.setattr(Trainer, "step", real_step)
    assert (
        main(["train", "vae", "--out", str(interrupted), "--epochs", "3", "--resume", "--quiet"])
        == 0
    )
    a = json.loads((straight / "metrics.json").read_text())["history"]
    b = json.loads((interrupted / "metrics.json").read_text())["history"]
    assert [r["test_elbo"] for r in a] == [r["test_elbo"] for r in b]


def test_a_run_with_relative_data_paths_reloads_from_another_directory(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "work" / "mine.npy", rng.random((50, 6)).astype(np.float32))
    monkeypatch.chdir(tmp_path / "work")
    assert train(Path("run"), "--dataset", "mine.npy", "--no-figures") == 0
    config = json.loads((tmp_path / "work" / "run" / "config.json").read_text())
    assert config["dataset"] == str(tmp_path / "work" / "mine.npy")
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = load_run(tmp_path / "work" / "run")
    assert run.test_inputs().shape == (10, 6)
