"""``pyrovae train mixture-vae`` and what follows, end to end as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from images import assert_png

from pyrovae.cli import main
from pyrovae.diagnostics.clustering import clustering_scores
from pyrovae.diagnostics.mixture_vae_figures import mean_codes, predict_clusters
from pyrovae.guides import GaussianEncoder
from pyrovae.procedures.mixture_vae import MeanCodeGuide
from pyrovae.runs import load_run
from pyrovae.runs.record import RunError

EPOCH_KEYS = (
    "test_accuracy",
    "test_adjusted_rand_index",
    "test_normalized_mutual_info",
    "code_log_likelihood",
    "posterior_scale",
    "component_scale",
    "code_scale",
    "weight_min",
    "weight_max",
)
SMALL = ["--latent-dim", "4", "--hidden", "32", "--batch-size", "64", "--quiet"]
FIGURES = {
    "cluster_samples.png",
    "cluster_means.png",
    "latent_clusters.png",
    "latent_labels.png",
    "cluster_confusion.png",
    "clustering.png",
    "elbo.png",
    "reconstructions.png",
}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mixture-vae"
    args = ["train", "mixture-vae", "--out", str(out), "--epochs", "3", "--pretrain-epochs", "2"]
    assert main([*args, *SMALL]) == 0
    return out


def test_a_run_on_digits_records_the_clustering_and_draws_the_figures(trained):
    metrics = read(trained / "metrics.json")
    assert [r["epoch"] for r in metrics["history"]] == [0, 1, 2, 3]
    scores = metrics["test_clustering"]
    assert set(scores) == {"accuracy", "adjusted_rand_index", "normalized_mutual_info"}
    assert 0.1 <= scores["accuracy"] <= 1 and scores["normalized_mutual_info"] > 0
    assert "c is summed out exactly" in metrics["units"]
    figures = {p.name for p in (trained / "figures").iterdir()}
    assert FIGURES <= figures, FIGURES - figures
    assert_png(trained / "figures" / "cluster_samples.png", grid=(10, 10))
    assert_png(trained / "figures" / "cluster_confusion.png")
    config = read(trained / "config.json")
    assert config["components"] == 10 and config["covariance"] == "full"
    assert (config["pretrain"], config["init"]) == ("dae", "data-kmeans")

    # The saved pair is the one scored: its clusters give metrics.json's numbers exactly.
    run = load_run(trained)
    clusters = predict_clusters(run.model, run.guide, run.test_inputs())
    assert clustering_scores(clusters, run.data.test_y) == scores


def test_the_history_records_the_clustering_every_epoch_from_the_initialisation_on(trained):
    history = read(trained / "metrics.json")["history"]
    start, last = history[0], history[-1]
    # Epoch 0 is the pair as pretraining and EM left it: scored, but not trained.
    assert start["epoch"] == 0 and "train_elbo" not in start
    for record in history:
        assert set(EPOCH_KEYS) <= set(record), set(EPOCH_KEYS) - set(record)
        assert 0 < record["test_accuracy"] <= 1 and -1 <= record["test_adjusted_rand_index"] <= 1
        assert 0 < record["weight_min"] <= 0.1 <= record["weight_max"] < 1
        assert record["posterior_scale"] > 0 and record["component_scale"] > 0
    scores = read(trained / "metrics.json")["test_clustering"]
    assert last["test_accuracy"] == scores["accuracy"]
    assert last["test_adjusted_rand_index"] == scores["adjusted_rand_index"]
    # The mixture's log-likelihood of the codes is that of the saved model at the last epoch.
    run = load_run(trained)
    codes = mean_codes(run.guide, run.data.train_x)
    expected = float(run.model.prior_log_prob(codes).mean().detach())
    assert last["code_log_likelihood"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_reports_the_clustering_beside_the_elbo_and_the_log_likelihood(trained, capsys):
    assert main(["evaluate", str(trained), "--num-samples", "20"]) == 0
    printed = capsys.readouterr().out
    for row in ("cluster accuracy (Hungarian)", "adjusted Rand index", "test log p(x), IS K=20"):
        assert row in printed
    report = read(trained / "eval.json")
    assert report["test_clustering"] == read(trained / "metrics.json")["test_clustering"]
    assert report["test_log_likelihood"] >= report["test_elbo"] - 0.5
    assert "c summed exactly" in report["method"]


def clustered_file(tmp_path: Path, n: int = 900) -> Path:
    """Four well-separated clusters in a 2-D latent space pushed through a fixed random
    decoder into 20 dimensions, with a little Gaussian noise; the labels are the clusters."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]])
    y = torch.arange(n) % 4
    z = centres[y] + 0.4 * torch.randn(n, 2, generator=g)
    hidden = torch.tanh(z @ torch.randn(2, 16, generator=g) / 2)
    x = hidden @ torch.randn(16, 20, generator=g) + 0.05 * torch.randn(n, 20, generator=g)
    path = tmp_path / "clusters.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    return path


def test_well_separated_clusters_through_a_random_decoder_are_recovered(tmp_path):
    out = tmp_path / "run"
    args = ["train", "mixture-vae", "--dataset", str(clustered_file(tmp_path)), "--out", str(out)]
    options = ["--components", "4", "--latent-dim", "2", "--hidden", "32", "--epochs", "15"]
    options += ["--pretrain-epochs", "15", "--batch-size", "64", "--lr", "3e-3", "--quiet"]
    assert main([*args, *options, "--likelihood", "gaussian"]) == 0
    scores = read(out / "metrics.json")["test_clustering"]
    assert scores["adjusted_rand_index"] > 0.95, scores
    assert scores["accuracy"] > 0.98, scores


def test_every_option_against_collapse_trains_and_resume_continues_the_warm_up(tmp_path):
    common = ["--pretrain", "vae", "--pretrain-epochs", "1", "--weights", "fixed"]
    common += ["--kl-warmup", "3", "--covariance", "spherical", "--no-figures", *SMALL]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", "mixture-vae", "--out", str(whole), "--epochs", "4", *common]) == 0
    assert main(["train", "mixture-vae", "--out", str(part), "--epochs", "2", *common]) == 0
    assert main(["train", "mixture-vae", "--out", str(part), "--epochs", "4", "--resume"]) == 0
    history = read(whole / "metrics.json")["history"]
    assert [r.get("kl_weight") for r in history] == [None, 0.25, 0.5, 0.75, 1.0]
    resumed = read(part / "metrics.json")["history"]
    assert [r.get("kl_weight") for r in resumed] == [None, 0.25, 0.5, 0.75, 1.0]
    # the initialisation's record, kept across the resume (its timing apart)
    assert resumed[0].pop("pretrain_seconds") > 0 and history[0].pop("pretrain_seconds") > 0
    assert resumed[0] == history[0]
    for a, b in zip(history[1:], resumed[1:], strict=True):
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], rel=1e-5)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=0.01)
    assert "warm-up objective" in read(whole / "metrics.json")["units"]
    run = load_run(whole)
    assert torch.equal(run.model.weights, torch.full((10,), 0.1))

    floor = tmp_path / "floor"
    args = [
        "--init",
        "random",
        "--pretrain-epochs",
        "0",
        "--min-weight",
        "0.05",
        "--no-figures",
        *SMALL,
    ]
    assert main(["train", "mixture-vae", "--out", str(floor), "--epochs", "2", *args]) == 0
    assert float(load_run(floor).model.weights.detach().min()) >= 0.05 - 1e-6


def test_a_run_interrupted_while_pretraining_resumes_there_to_the_same_numbers(
    tmp_path, monkeypatch, capsys, interrupt_pretraining
):
    """Pretraining is checkpointed every epoch: a run stopped in its third of four pretraining
    epochs keeps the first two, refuses to be read as trained, and --resume continues from
    there to the numbers of a run never stopped."""
    common = ["--pretrain-epochs", "4", "--epochs", "2", "--no-figures", *SMALL]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "mixture-vae", "--out", str(straight), *common]) == 0
    interrupt_pretraining(2)
    loud = [arg for arg in common if arg != "--quiet"]
    assert main(["train", "mixture-vae", "--out", str(stopped), *loud]) == 130
    assert "interrupted while initialising" in capsys.readouterr().out
    state = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert state["phase"] == "initializing" and state["initialization"]["epoch"] == 2
    assert read(stopped / "metrics.json")["history"] == []
    with pytest.raises(RunError, match="being initialised.*--resume"):
        load_run(stopped)
    assert main(["evaluate", str(stopped), "--quiet"]) != 0
    assert "being initialised" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["train", "mixture-vae", "--out", str(stopped), "--resume"]) == 0
    assert "resuming from 2 of 4 pretraining epochs" in capsys.readouterr().out
    a = read(straight / "metrics.json")["history"]
    b = read(stopped / "metrics.json")["history"]
    assert [r["epoch"] for r in b] == [0, 1, 2]
    assert b[0]["pretrain_seconds"] > 0  # the four epochs' time, across the two calls
    for x, y in zip(a, b, strict=True):
        for timing in ("seconds", "pretrain_seconds"):
            x.pop(timing, None), y.pop(timing, None)
        assert x == pytest.approx(y, rel=1e-6)


@pytest.mark.parametrize(
    "init, rows", [("data-kmeans", "training rows"), ("code-kmeans", "mean codes")]
)
def test_k_means_initialises_the_mixture_with_the_clusters_of_the_data(
    tmp_path, capsys, init, rows
):
    """Well-separated clusters: k-means on x (or on the pretrained codes) finds them, and each
    component, fitted to the codes of one of them, classifies the test codes before any SVI
    epoch (epoch 0)."""
    out = tmp_path / "run"
    args = ["train", "mixture-vae", "--dataset", str(clustered_file(tmp_path)), "--out", str(out)]
    options = ["--components", "4", "--latent-dim", "2", "--hidden", "32", "--epochs", "1"]
    options += ["--pretrain-epochs", "3", "--init", init, "--no-figures"]
    assert main([*args, *options, "--likelihood", "gaussian"]) == 0
    assert f"initialised from k-means on 720 {rows}" in capsys.readouterr().out
    start = read(out / "metrics.json")["history"][0]
    assert start["epoch"] == 0 and start["test_accuracy"] > 0.98, start
    assert read(out / "config.json")["init"] == init


def test_denoising_pretraining_masks_the_inputs_only_while_training():
    torch.manual_seed(0)
    encoder = GaussianEncoder(12, 2, (8,))
    x = torch.rand(500, 12) + 0.5
    guide = MeanCodeGuide(encoder, noise=0.25)
    guide.eval()
    assert torch.equal(guide(x), encoder.encode(x)[0])
    guide.train()
    masked = []
    original = encoder.encode

    def spy(inputs):
        masked.append(float((inputs == 0).float().mean()))
        return original(inputs)

    encoder.encode = spy
    guide(x)
    # a share 0.25 of the 6000 values zeroed: within 4 binomial standard errors (0.0056)
    assert masked[0] == pytest.approx(0.25, abs=4 * (0.25 * 0.75 / 6000) ** 0.5)
    assert not torch.equal(guide(x), original(x)[0])
    assert torch.equal(MeanCodeGuide(encoder, noise=0.0).train()(x), original(x)[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-weight", "0.2"], r"--min-weight must be in \[0, 1/K\)"),
        (["--weights", "fixed", "--min-weight", "0.01"], "applies to learned weights"),
        (["--components", "0"], "--components must be at least 1"),
        (["--pretrain-epochs", "-1"], "--pretrain-epochs must be >= 0"),
        (["--kl-warmup", "-2"], "--kl-warmup must be >= 0"),
        (["--pretrain-noise", "1"], r"--pretrain-noise must be in \[0, 1\)"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["train", "mixture-vae", "--out", str(out), *extra, *SMALL]) != 0
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")
    assert not out.exists()
