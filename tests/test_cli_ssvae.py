"""``pyrovae train ssvae`` and ``pyrovae train adgm | sdgm`` (the same recipe with the
auxiliary pairs) and what follows, end to end as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyro
import pytest
from images import assert_png

from pyrovae.cli import main
from pyrovae.diagnostics.ssvae_figures import accuracy
from pyrovae.infer import log_marginal
from pyrovae.runs import load_run

SMALL = ["--latent-dim", "4", "--hidden", "32", "--batch-size", "64", "--quiet"]
#: The settings of each semi-supervised model for a small run.
MODELS = {"ssvae": SMALL, "adgm": [*SMALL, "--aux-dim", "4"], "sdgm": [*SMALL, "--aux-dim", "4"]}
#: The recipe's own behaviour (resume, refusals) is tested on M2 and the ADGM; the SDGM is the
#: ADGM's recipe with another model, run end to end by the `trained` fixture.
RECIPES = ("ssvae", "adgm")
#: The classifier each model's report names.
CLASSIFIER = {
    "ssvae": "q(y | x)",
    "adgm": "q(y | a, x) at the mean of q(a | x)",
    "sdgm": "q(y | a, x) at the mean of q(a | x)",
}
SSVAE_FIGURES = {"elbo.png", "accuracy.png", "confusion.png", "conditional.png", "analogies.png"}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model) -> Path:
    out = tmp_path_factory.mktemp("runs") / model
    args = ["train", model, "--out", str(out), "--epochs", "3", "--num-labels", "50"]
    assert main([*args, *MODELS[model]]) == 0
    return out


def test_a_run_records_validation_accuracy_and_keeps_the_best_epoch(trained, model):
    assert {p.name for p in trained.iterdir()} >= {
        "checkpoint.pt",
        "best.pt",
        "config.json",
        "metrics.json",
        "figures",
    }
    config, metrics = read(trained / "config.json"), read(trained / "metrics.json")
    assert config["num_classes"] == 10 and config["objective"] == "enum"
    assert config["model"] == model and CLASSIFIER[model] in metrics["units"]
    history = metrics["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert all(0 <= r["valid_accuracy"] <= 1 and np.isfinite(r["test_elbo"]) for r in history)
    best = max(history, key=lambda r: r["valid_accuracy"])  # the first of ties
    assert metrics["selected"] == {"epoch": best["epoch"], "valid_accuracy": best["valid_accuracy"]}
    assert 0.2 < metrics["test_accuracy"] <= 1
    assert SSVAE_FIGURES <= {p.name for p in (trained / "figures").iterdir()}
    for path in (trained / "figures").iterdir():
        assert_png(path)

    # The reloaded run is the selected model: its accuracy is the one recorded.
    run = load_run(trained)
    assert run.notes["selected"]["epoch"] == best["epoch"]
    assert accuracy(run.guide, run.test_inputs(), run.data.test_y) == metrics["test_accuracy"]
    validation = len(run.data.valid_x)
    assert validation == 1437 // 6 and len(run.data.train_x) == 1437 - validation


def test_evaluate_writes_the_accuracy_beside_the_elbo_and_the_log_likelihood(
    trained, model, capsys
):
    assert main(["evaluate", str(trained), "--num-samples", "20", "--quiet"]) == 0
    report = read(trained / "eval.json")
    metrics = read(trained / "metrics.json")
    assert report["test_accuracy"] == metrics["test_accuracy"]
    assert report["selected_epoch"] == metrics["selected"]["epoch"]
    assert report["num_samples"] == 20 and report["num_examples"] == 360
    # The log-likelihood is log_marginal's with y summed exactly, draw for draw (seed 0).
    run = load_run(trained)
    pyro.set_rng_seed(0)
    direct = log_marginal(run.model, run.guide, run.test_inputs(), num_samples=20, progress=False)
    assert report["test_log_likelihood"] == pytest.approx(direct.mean(), abs=1e-9)
    assert report["test_log_likelihood_stderr"] == pytest.approx(direct.mean_stderr(), abs=1e-12)
    assert f"test accuracy, argmax {CLASSIFIER[model]}" in capsys.readouterr().out
    assert report["method"].startswith("y summed exactly over the classes")
    # TraceEnum_ELBO is a lower bound on what the importance weights estimate.
    assert report["test_elbo"] < report["test_log_likelihood"]


def test_plot_and_sample_use_the_run(trained, tmp_path):
    assert main(["plot", str(trained), "--out", str(tmp_path / "figs")]) == 0
    assert SSVAE_FIGURES <= {p.name for p in (tmp_path / "figs").iterdir()}
    assert main(["sample", str(trained), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert_png(tmp_path / "s.png", grid=(4, 4))


@pytest.mark.parametrize("model", RECIPES)
def test_resume_continues_to_the_numbers_of_an_uninterrupted_run(tmp_path, model):
    args = ["train", model, "--num-labels", "30", *MODELS[model]]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*args, "--out", str(whole), "--epochs", "2", "--no-figures"]) == 0
    assert main([*args, "--out", str(split), "--epochs", "1", "--no-figures"]) == 0
    assert main(["train", model, "--out", str(split), "--epochs", "2", "--resume", "--quiet"]) == 0
    a, b = read(whole / "metrics.json")["history"], read(split / "metrics.json")["history"]
    for key in ("train_elbo", "valid_accuracy"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5)


@pytest.mark.parametrize("model", RECIPES)
def test_every_label_kept_trains_a_supervised_conditional_model(tmp_path, model, capsys):
    out = tmp_path / "all"
    args = ["train", model, "--out", str(out), "--epochs", "1", "--num-labels", "all"]
    assert main([*args, *MODELS[model][:4], "--no-figures"]) == 0
    assert "0 unlabelled" in capsys.readouterr().out
    assert read(out / "config.json")["num_labels"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num-labels", "5"], "fewer than the 10 classes"),
        # ssvae's networks read [x, one_hot(y)]: it has no --architecture to set.
        (["--architecture", "conv"], "unrecognized arguments: --architecture conv"),
        (["--validation-size", "5000"], "--validation-size 5000 must be between"),
        (["--alpha", "-1"], "--alpha must be >= 0"),
        (["--hidden", "0"], "positive hidden layer widths"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    tmp_path, capsys, model, extra, message
):
    out = tmp_path / "bad"
    try:
        status = main(["train", model, "--out", str(out), "--epochs", "1", *MODELS[model], *extra])
    except SystemExit as e:  # argparse's refusal of an option the recipe does not have
        status = e.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_auxiliary_dimension_is_adgms_alone(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["train", "adgm", "--out", str(out), *MODELS["ssvae"], "--aux-dim", "0"]) == 2
    assert "--aux-dim must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "ssvae", "--out", str(out), *MODELS["adgm"]])
    assert "unrecognized arguments: --aux-dim 4" in capsys.readouterr().err
    assert not out.exists()


def test_data_without_labels_are_refused_with_the_fix(tmp_path, capsys, model):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((50, 4)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["train", model, "--dataset", str(path), "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and "train a vae" in err
    assert not out.exists()


def test_num_labels_parses_all_and_refuses_nonsense(capsys):
    with pytest.raises(SystemExit):
        main(["train", "ssvae", "--num-labels", "some"])
    assert "expected a number of labelled examples or 'all'" in capsys.readouterr().err
