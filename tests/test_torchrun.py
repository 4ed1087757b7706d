"""``torchrun --nproc_per_node 2 -m pyrovae train ...`` as a user runs it: two gloo ranks on
this machine, one thread each.

The autoencoder's loss is deterministic, so two ranks with batch B must train what one
process trains with batch 2B; a run interrupted and resumed under torchrun must equal an
uninterrupted one (each rank's noise stream is in the checkpoint); EM across ranks fits
what one process fits; evaluation splits the test examples; only rank 0 writes and speaks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pyrovae.cli import main

QUICK = ["--dataset", "digits", "--hidden", "32", "--latent-dim", "3", "--no-figures"]


def torchrun(*args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "pyrovae",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def history(run: Path) -> list[dict]:
    """The run's epoch records without their wall-clock seconds."""
    records = json.loads((run / "metrics.json").read_text())["history"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_two_ranks_train_the_autoencoder_of_one_process_with_twice_the_batch(tmp_path):
    ranks = torchrun(
        "train", "ae", *QUICK, "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path / "two")
    )
    assert ranks.returncode == 0, ranks.stderr
    assert ranks.stdout.count("done: epoch 2") == 1  # rank 0 alone speaks
    assert (
        main(
            [
                "train",
                "ae",
                *QUICK,
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--quiet",
                "--out",
                str(tmp_path / "one"),
            ]
        )
        == 0
    )
    for got, want in zip(history(tmp_path / "two"), history(tmp_path / "one"), strict=True):
        assert got["train_elbo"] == pytest.approx(want["train_elbo"], rel=1e-5)
        assert got["test_elbo"] == pytest.approx(want["test_elbo"], rel=1e-5)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    for part in ("model", "guide"):
        for name, value in one[part].items():
            torch.testing.assert_close(two[part][name], value, rtol=1e-4, atol=1e-5)
    assert len(two["rng"]["ranks"]) == 2  # each rank's noise stream, for --resume


def resumed_scenario(root: Path) -> list[subprocess.CompletedProcess]:
    vae = ["train", "vae", *QUICK, "--batch-size", "32", "--quiet"]
    runs = [torchrun(*vae, "--epochs", "3", "--out", str(root / "whole"))]
    runs.append(torchrun(*vae, "--epochs", "2", "--out", str(root / "parts")))
    runs.append(torchrun(*vae, "--epochs", "3", "--out", str(root / "parts"), "--resume"))
    return runs


@pytest.mark.slow
def test_a_run_resumed_under_torchrun_equals_an_uninterrupted_one(tmp_path):
    runs = resumed_scenario(tmp_path)
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert history(tmp_path / "parts") == history(tmp_path / "whole")
    assert {p.name for p in (tmp_path / "parts").iterdir()} == {
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        ".lock",
    }


def test_the_semi_supervised_run_shares_its_batches_and_selects_on_rank_0(tmp_path):
    # Its best-epoch callback saves from rank 0 alone: nothing it calls may wait for the
    # other ranks (a collective there once hung this run).
    out = tmp_path / "ssvae"
    result = torchrun(
        "train",
        "ssvae",
        *QUICK,
        "--num-labels",
        "50",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--out",
        str(out),
        timeout=150,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("selected epoch") == 1
    assert (out / "best.pt").exists() and len(history(out)) == 2


@pytest.mark.slow
def test_em_under_torchrun_fits_what_one_process_fits(tmp_path):
    gmm = ["train", "gmm", "--dataset", "digits", "--components", "4", "--max-iter", "15"]
    result = torchrun(*gmm, "--no-figures", "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done: K = 4") == 1
    assert main([*gmm, "--no-figures", "--quiet", "--out", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for key in ("train_log_likelihood", "test_log_likelihood", "bic"):
        assert two[key] == pytest.approx(one[key], rel=1e-9), key


@pytest.mark.slow
def test_evaluate_splits_the_test_examples_over_the_ranks(tmp_path):
    run = tmp_path / "vae"
    assert main(["train", "vae", *QUICK, "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--num-samples", "50", "--quiet"]) == 0
    single = json.loads((run / "eval.json").read_text())
    (run / "eval.json").unlink()
    result = torchrun("evaluate", str(run), "--num-samples", "50")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("mean ESS") == 1  # the table, printed by rank 0 alone
    ranks = json.loads((run / "eval.json").read_text())
    assert ranks["num_examples"] == single["num_examples"] == 360
    # Other draws (rank r from seed + r), the same estimand: within a few standard errors.
    stderr = "test_log_likelihood_stderr"
    error = (single[stderr] ** 2 + ranks[stderr] ** 2) ** 0.5
    assert abs(ranks["test_log_likelihood"] - single["test_log_likelihood"]) < 4 * error + 1e-3


DYING = """
import os

from pyrovae.guides import GaussianEncoder
from pyrovae.models import VAE


class Dying(VAE):
    calls = 0

    def forward(self, x, y=None):
        Dying.calls += 1
        if os.environ.get("RANK") == "1" and str(Dying.calls) == os.environ.get("DIE_AT_CALL"):
            raise RuntimeError("rank 1 fails on purpose")
        return super().forward(x, y)


def make(input_dim, latent_dim):
    model = Dying(input_dim, latent_dim, (32,), likelihood="continuous-bernoulli")
    return model, GaussianEncoder(input_dim, latent_dim, (32,))
"""


@pytest.mark.slow
def test_a_failing_rank_stops_the_job_and_the_last_checkpoint_resumes(tmp_path):
    (tmp_path / "dying.py").write_text(textwrap.dedent(DYING))
    out = tmp_path / "run"
    # --eager: the model runs on every step, so its 40th call falls in epoch 2 (23 steps).
    train = [
        "train",
        "dying:make",
        "--dataset",
        "digits",
        "--latent-dim",
        "3",
        "--eager",
        "--batch-size",
        "32",
        "--epochs",
        "3",
        "--no-figures",
        "--quiet",
        "--out",
        str(out),
    ]
    path = {"PYTHONPATH": str(tmp_path)}
    failed = torchrun(*train, timeout=150, DIE_AT_CALL="40", **path)
    assert failed.returncode != 0
    assert "rank 1 fails on purpose" in failed.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not list(out.glob("*.tmp"))
    resumed = torchrun(*train, "--resume", "--factory-path", str(tmp_path), timeout=150, **path)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in history(out)] == [1, 2, 3]
