"""``pyrovae train hvae`` end to end on digits: train, resume, evaluate, plot, sample, and
its own option refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from images import assert_png

from pyrovae.cli import main
from pyrovae.guides.hierarchical import HierarchicalVAEGuide
from pyrovae.models.hvae import HierarchicalVAE
from pyrovae.runs import load_run

# Three steps an epoch on digits' 1437 training rows: the runs test the wiring, not a fit.
SMALL = ["--hidden", "16", "--latent-dim", "3", "--top-dim", "2", "--batch-size", "512", "--quiet"]


def train(out: Path, epochs: int, *extra: str) -> int:
    return main(["train", "hvae", "--out", str(out), "--epochs", str(epochs), *SMALL, *extra])


def history(run: Path) -> list[tuple]:
    records = json.loads((run / "metrics.json").read_text())["history"]
    return [(r["epoch"], r["train_elbo"], r["test_elbo"]) for r in records]


def exit_code(args: list[str]) -> int:
    """main's status, where argparse's own refusals exit from the parser."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hvae") / "run"
    assert train(out, 2, "--no-figures") == 0
    return out


def test_train_saves_the_pair_with_both_layers_of_the_options(trained):
    config = json.loads((trained / "config.json").read_text())
    assert (config["model"], config["latent_dim"], config["top_dim"]) == ("hvae", 3, 2)
    assert config["likelihood"] == "continuous-bernoulli"
    run = load_run(trained)
    assert isinstance(run.model, HierarchicalVAE) and isinstance(run.guide, HierarchicalVAEGuide)
    assert (run.model.latent_dim, run.model.top_dim, run.guide.top_dim) == (3, 2, 2)
    saved = torch.load(trained / "checkpoint.pt", weights_only=True)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, saved["model"][key])
    assert [epoch for epoch, *_ in history(trained)] == [1, 2]


def test_evaluate_importance_samples_both_layers(trained):
    assert main(["evaluate", str(trained), "--num-samples", "20", "--quiet"]) == 0
    report = json.loads((trained / "eval.json").read_text())
    assert report["num_samples"] == 20
    # log p(x) >= its ELBO estimate from the same draws (Jensen), per example and on average
    assert report["test_log_likelihood"] >= report["test_elbo"]


def test_plot_and_sample_draw_from_the_two_layer_prior(trained, tmp_path):
    figures = tmp_path / "figures"
    assert main(["plot", str(trained), "--out", str(figures)]) == 0
    for name in ("samples.png", "reconstructions.png", "traversals.png", "latent_space.png"):
        assert_png(figures / name)
    grid = tmp_path / "grid.png"
    assert main(["sample", str(trained), "--n", "16", "--out", str(grid)]) == 0
    assert_png(grid, grid=(4, 4))


def test_resume_reaches_the_numbers_of_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(straight, 3, "--no-figures") == 0
    assert train(split, 2, "--no-figures") == 0
    resumed = ["train", "hvae", "--out", str(split), "--epochs", "3", "--resume", "--quiet"]
    assert main([*resumed, "--no-figures"]) == 0
    # The same weights, bit for bit; the recorded train ELBO to float32 rounding: epoch 3 is
    # the resumed process's first, whose steps start on Pyro's eager loss, and the captured
    # graph (pyrovae.infer.captured) sums the five sites' float32 log-densities in another
    # order (with --eager the two histories are equal to the last bit).
    for name in ("model", "guide"):
        a = torch.load(split / "checkpoint.pt", weights_only=True)[name]
        b = torch.load(straight / "checkpoint.pt", weights_only=True)[name]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for resumed, uninterrupted in zip(history(split), history(straight), strict=True):
        assert resumed == pytest.approx(uninterrupted, rel=1e-6)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--top-dim", "0", "--top-dim must be at least 1, got 0"),
        ("--top-dim", "two", "argument --top-dim: must be an integer, got 'two'"),
    ],
)
def test_a_bad_top_dim_is_refused_in_one_line(tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    assert exit_code(["train", "hvae", "--out", str(out), flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_top_dim_belongs_to_hvae_alone(tmp_path, capsys):
    assert exit_code(["train", "vae", "--out", str(tmp_path / "r"), "--top-dim", "2"]) == 2
    assert "unrecognized arguments: --top-dim 2" in capsys.readouterr().err
