"""``pyrovae train seqvae | dmm`` and what follows, end to end as a user runs them, on small
synthetic piano rolls saved as a user's own ``.npz`` of sequences with lengths."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyro
import pytest
import torch
from images import assert_png

from pyrovae.cli import main
from pyrovae.guides import SequenceEncoder
from pyrovae.infer import log_marginal
from pyrovae.models import SequenceVAE
from pyrovae.runs import load_run
from pyrovae.runs.recipes.sequences import terms_metric

SEQVAE = ["--latent-dim", "2", "--hidden-dim", "12", "--batch-size", "16", "--quiet"]
DMM = [
    "--latent-dim", "2", "--hidden-dim", "8", "--transition-dim", "8", "--emission-hidden", "8",
    "--batch-size", "16", "--quiet",
]  # fmt: skip
FIGURES = {"elbo.png", "terms.png", "reconstructions.png", "samples.png"}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def rolls(n: int = 40, steps: int = 9, keys: int = 8, seed: int = 0) -> tuple:
    """Two voices a third apart walking up the keys, of 3..steps steps, padded with zeros."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, keys), np.uint8)
    lengths = rng.integers(3, steps + 1, n)
    for i in range(n):
        start = rng.integers(0, keys)
        for t in range(lengths[i]):
            x[i, t, (start + t) % keys] = x[i, t, (start + t + 2) % keys] = 1
    return x, lengths


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "rolls.npz"
    x, lengths = rolls()
    np.savez(path, x=x, lengths=lengths)
    return str(path)


@pytest.fixture(scope="module")
def seqvae(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "seqvae"
    args = ["train", "seqvae", "--dataset", data, "--out", str(out), "--epochs", "3"]
    assert main([*args, "--kl-warmup", "2", "--input-dropout", "0.25", *SEQVAE]) == 0
    return out


def test_a_sequence_vae_run_records_the_terms_and_draws_piano_rolls(seqvae):
    metrics = read(seqvae / "metrics.json")
    history = metrics["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["kl_weight"] for r in history] == pytest.approx([1 / 3, 2 / 3, 1.0])
    for record in history:  # the ELBO's terms, per sequence
        assert record["test_kl"] > 0 and record["test_reconstruction"] < 0
        assert record["test_reconstruction"] - record["test_kl"] == pytest.approx(
            record["test_elbo"], rel=1e-6
        )
    assert "nats per sequence" in metrics["units"] and "kl_weight" in metrics["units"]
    config = read(seqvae / "config.json")
    assert config["likelihood"] == "bernoulli" and config["input_dropout"] == 0.25
    figures = {p.name for p in (seqvae / "figures").iterdir()}
    assert FIGURES | {"interpolation.png"} <= figures
    for name in FIGURES | {"interpolation.png"}:
        assert_png(seqvae / "figures" / name)


def test_evaluate_reports_per_sequence_and_per_step_numbers_that_log_marginal_gives(seqvae):
    assert main(["evaluate", str(seqvae), "--num-samples", "20", "--quiet"]) == 0
    report = read(seqvae / "eval.json")
    run = load_run(seqvae)
    x, lengths = run.test_inputs()
    assert report["num_examples"] == len(lengths) == 8 and report["num_steps"] == int(lengths.sum())
    steps = report["num_steps"]
    per_step = report["per_step"]
    assert per_step["test_log_likelihood"] == pytest.approx(
        report["test_log_likelihood"] * len(lengths) / steps
    )
    assert per_step["test_elbo"] == pytest.approx(report["test_elbo"] * len(lengths) / steps)
    assert report["test_kl"] > 0
    # evaluate's seed 0 gives log_marginal's numbers on the same (x, lengths).
    pyro.set_rng_seed(0)
    again = log_marginal(run.model, run.guide, (x, lengths), num_samples=20, progress=False)
    assert again.summary()["log_likelihood"] == pytest.approx(report["test_log_likelihood"])
    assert report["test_log_likelihood"] >= report["test_elbo"] - 1e-6


def test_sample_and_plot_write_piano_rolls(seqvae, tmp_path):
    out = tmp_path / "samples.png"
    assert main(["sample", str(seqvae), "--n", "5", "--out", str(out)]) == 0
    assert_png(out)
    assert main(["sample", str(seqvae), "--n", "33", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", str(seqvae), "--out", str(tmp_path / "again")]) == 0
    assert FIGURES <= {p.name for p in (tmp_path / "again").iterdir()}


def test_a_resumed_sequence_vae_equals_an_uninterrupted_one(data, tmp_path):
    base = ["train", "seqvae", "--dataset", data, "--kl-warmup", "2", "--no-figures", *SEQVAE]
    assert main([*base, "--epochs", "3", "--out", str(tmp_path / "whole")]) == 0
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "parts")]) == 0
    assert main([*base, "--epochs", "3", "--out", str(tmp_path / "parts"), "--resume"]) == 0

    def history(run: str) -> list[dict]:
        records = read(tmp_path / run / "metrics.json")["history"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert history("parts") == history("whole")


def test_a_deep_markov_model_run_trains_evaluates_and_draws(data, tmp_path):
    out = tmp_path / "dmm"
    args = ["train", "dmm", "--dataset", data, "--out", str(out), "--epochs", "2", *DMM]
    assert main([*args, "--guide-rnn", "rnn"]) == 0
    history = read(out / "metrics.json")["history"]
    assert all(r["test_kl"] > 0 for r in history)
    config = read(out / "config.json")
    assert config["emission_dims"] == [8] and config["guide_rnn"] == "rnn"
    assert FIGURES <= {p.name for p in (out / "figures").iterdir()}
    assert main(["evaluate", str(out), "--num-samples", "10", "--quiet"]) == 0
    report = read(out / "eval.json")
    assert report["per_step"]["test_log_likelihood"] < 0 and report["test_kl"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "vae", "--dataset", "{data}"], "holds sequences .* seqvae or dmm"),
        (["train", "seqvae", "--dataset", "digits"], "holds images, not sequences"),
        (["train", "seqvae", "--dataset", "{data}", "--input-dropout", "1"], "--input-dropout"),
        (["train", "dmm", "--dataset", "{data}", "--kl-warmup", "-1"], "--kl-warmup"),
    ],
)
def test_bad_data_or_options_are_refused_before_anything_is_written(
    data, tmp_path, capsys, args, message
):
    out = tmp_path / "run"
    args = [a.replace("{data}", data) for a in args]
    assert main([*args, "--out", str(out), "--epochs", "1", "--quiet"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_a_guide_rnn_other_than_gru_or_rnn_is_refused_by_argparse(data, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as refused:
        main(["train", "dmm", "--dataset", data, "--guide-rnn", "lstm", "--out", str(out)])
    assert refused.value.code == 2
    assert "--guide-rnn: invalid choice: 'lstm'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_epoch_terms_leave_the_cuda_stream_of_training_alone():
    """The metric seeds its own draws; CUDA's generator, which training draws from, must be
    as it was (seeding without forking it would repeat the same noise every epoch)."""
    x, lengths = (torch.as_tensor(a) for a in rolls())
    model, guide = SequenceVAE(8, 2, 8).cuda(), SequenceEncoder(8, 2, 8).cuda()
    trainer = SimpleNamespace(model=model, guide=guide, device="cuda")
    torch.randn(1, device="cuda")  # CUDA initialised, its stream in use
    before = torch.cuda.get_rng_state()
    record = terms_metric((x.float(), lengths.long()), seed=0)(trainer)
    assert record["test_kl"] > 0
    assert torch.equal(torch.cuda.get_rng_state(), before)
