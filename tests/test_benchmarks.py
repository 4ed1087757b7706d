"""The benchmark scripts still run against the library: tiny runs, as a user would call them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyrovae.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--latent-dim", "4", "--hidden", "32", "--batch-size", "64", "--quiet", "--no-figures"]


def script(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def ssvae_runs(tmp_path_factory) -> Path:
    """A digits SSVAE run where benchmarks/ssvae_mnist.py looks for 50 labels, seed 0."""
    runs = tmp_path_factory.mktemp("bench")
    out = runs / "ssvae-50-seed0"
    args = ["train", "ssvae", "--out", str(out), "--epochs", "2", "--num-labels", "50"]
    assert main([*args, *SMALL]) == 0
    return runs


def test_the_ssvae_benchmark_summarizes_and_evaluates_existing_runs(ssvae_runs):
    table = script(
        "ssvae_mnist.py",
        "--runs",
        str(ssvae_runs),
        "--labels",
        "50",
        "--seeds",
        "0",
        "--summarize",
        "--eval-samples",
        "3",
    )
    header, rule, row = table.strip().splitlines()
    assert "log p(x), IS K=3" in header and "Kingma M2" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "50" and cells[2] == "1" and cells[3].startswith("2 (")
    assert 0 <= float(cells[1]) <= 100
    # The table's ELBO and IS columns are the run's eval.json, rounded.
    report = json.loads((ssvae_runs / "ssvae-50-seed0" / "eval.json").read_text())
    assert report["num_samples"] == 3
    assert float(cells[5]) == pytest.approx(report["test_elbo"], abs=0.01)
    assert float(cells[6]) == pytest.approx(report["test_log_likelihood"], abs=0.01)


def test_the_ssvae_benchmark_resumes_an_adgm_run_short_of_its_epochs(tmp_path):
    """A run with fewer epochs than --epochs continues from its checkpoint (on its own saved
    data: resuming takes only the epochs from the script), is evaluated and tabulated."""
    out = tmp_path / "adgm-50-seed0"
    args = ["train", "adgm", "--out", str(out), "--epochs", "1", "--num-labels", "50"]
    assert main([*args, *SMALL, "--aux-dim", "4", "--no-figures"]) == 0
    table = script(
        "ssvae_mnist.py",
        *("--model", "adgm", "--runs", str(tmp_path), "--labels", "50", "--seeds", "0"),
        *("--epochs", "2", "--eval-samples", "3"),
    )
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    header, rule, row = table.strip().splitlines()
    assert "Kingma M1+M2" in header and "Maaløe ADGM" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "50" and cells[3].startswith("2 (")
    report = json.loads((out / "eval.json").read_text())
    assert float(cells[1]) == pytest.approx(100 * (1 - report["test_accuracy"]), abs=0.01)


def test_the_ssvae_benchmark_puts_the_sdgm_beside_its_own_published_number(tmp_path):
    """--model sdgm: the same runs and table, with Maaløe et al.'s SDGM column (no run here:
    the header alone)."""
    table = script("ssvae_mnist.py", "--model", "sdgm", "--runs", str(tmp_path), "--summarize")
    header, rule = table.strip().splitlines()
    assert "Maaløe SDGM" in header and "Maaløe ADGM" not in header


def test_the_ssvae_benchmark_times_a_run_by_its_median_epoch_not_its_pauses():
    """An epoch that holds a pause (the process stopped with SIGSTOP) does not count: three
    epochs of about a minute and one of an hour make a run of 4 x 68 s, not 63 minutes."""
    spec = importlib.util.spec_from_file_location(
        "ssvae_mnist", ROOT / "benchmarks" / "ssvae_mnist.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = [{"epoch": e, "seconds": s} for e, s in enumerate([60, 3600, 66, 70], 1)]
    assert module.minutes_per_run(records) == pytest.approx(4 * 68 / 60)


def test_the_denormal_benchmark_times_a_trained_run(ssvae_runs):
    out = script("denormal_steps.py", str(ssvae_runs / "ssvae-50-seed0"), "--repeats", "2")
    ratio = float(out.strip().splitlines()[-1].split()[-1])
    assert ratio > 0


@pytest.mark.parametrize(
    "name, args",
    [
        ("ssvae_step.py", ["--rows", "300", "--labels", "20", "--batch-size", "50"]),
        ("ssvae_step.py", ["--rows", "200", "--labels", "20", "--batch-size", "50", "--long", "2"]),
        ("mixture_svi_step.py", ["--rows", "400", "--pca-dim", "5", "--batch-size", "100"]),
    ],
)
def test_the_speed_benchmarks_run_and_print_their_ratio_last(name, args):
    out = script(name, "--dataset", "digits", "--repeats", "1", *args)
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio ") and float(last.split()[1]) > 0
    if "--long" not in args:
        assert "batch shapes captured" in out and " 0 of " not in out


def test_the_em_benchmark_starts_both_from_one_point_and_agrees():
    out = script(
        "gmm_em.py", "--cases", "digits", "synthetic", "--rows", "2000", "--iterations", "3"
    )
    lines = out.strip().splitlines()
    assert lines[-1].startswith("ratio ") and float(lines[-1].split()[1]) > 0
    results = [line for line in lines if "from one start" in line]
    assert len(results) == 5  # four covariance types on blobs, full on digits
    for line in results:
        assert "(3 iterations," in line
        difference = float(line.rsplit("difference ", 1)[1])
        assert difference < 1e-8, line


def test_the_distributed_benchmark_runs_two_ranks_and_prints_its_ratio_last():
    out = script(
        "distributed.py",
        "--dataset",
        "digits",
        "--rows",
        "600",
        "--repeats",
        "1",
        "--em-iters",
        "1",
    )
    lines = out.strip().splitlines()
    assert lines[-1].startswith("ratio ") and float(lines[-1].split()[1]) > 0
    assert any(line.startswith("em: ") for line in lines)


def test_the_mixture_vae_benchmark_trains_evaluates_tabulates_and_resumes(tmp_path):
    numbers, runs = tmp_path / "numbers.json", tmp_path / "runs"
    common = ["--data-dir", str(tmp_path), "--dataset", "digits", "--hidden", "16"]
    common += ["--latent-dim", "2", "--pretrain-epochs", "1", "--num-samples", "5"]
    common += ["--out", str(runs), "--json", str(numbers), "--lr-decay-epochs", "1"]
    out = script("mixture_vae_mnist.py", *common, "--seeds", "0", "--epochs", "1", "--vae",
                 "--baselines")  # fmt: skip
    assert "| **mixture-prior VAE, mean ± sd of 1** |" in out
    assert "| gmm_pca50 (EM, K = 10) |" in out and "| DEC (Xie et al. 2016) | | 84.30 |" in out
    results = json.loads(numbers.read_text())
    (row,) = results["runs"]
    assert row["seed"] == 0 and row["epochs"] == 1 and 0 < row["init_accuracy"] <= 1
    assert 0 < row["accuracy"] <= 1 and row["test_log_likelihood"] >= row["test_elbo"] - 1
    vae = results["vae"]
    assert vae["epochs"] == 2 and 0 < vae["accuracy"] <= 1  # EM on the VAE's codes, scored
    assert "then EM on its codes | | " + f"{100 * vae['accuracy']:.2f}" in out
    nearest = vae["code_kmeans"]  # k-means on the same codes, test codes to the nearest centre
    assert 0 < nearest["accuracy"] <= 1 and -1 <= nearest["adjusted_rand_index"] <= 1
    assert "then k-means on its codes | | " + f"{100 * nearest['accuracy']:.2f}" in out
    assert set(results["baselines"]) == {"gmm_pixels", "gmm_pca50"}
    first = json.loads((runs / "mixture-vae-seed0" / "metrics.json").read_text())["history"]
    # The same command with more epochs continues seed 0 from its checkpoint (--resume).
    out = script("mixture_vae_mnist.py", *common, "--seeds", "0", "--epochs", "3")
    assert "mixture-vae-seed0: resuming after SVI epoch 1 of 3" in out
    history = json.loads((runs / "mixture-vae-seed0" / "metrics.json").read_text())["history"]
    assert history[:2] == first and [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert [r["lr"] for r in history[1:]] == pytest.approx([2e-3, 1.8e-3, 1.62e-3])
    assert (
        json.loads(numbers.read_text())["runs"][0]["final_accuracy"] == history[-1]["test_accuracy"]
    )
    # The same folder asked for other mixture options is refused, not continued as it was.
    other = ["--seeds", "0", "--epochs", "4", "--mixture", "--init em --covariance diag"]
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mixture_vae_mnist.py"), *common, *other],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0
    assert "--covariance diag (the run's: full); --init em (the run's: code-kmeans)" in (
        refused.stderr
    )
    assert json.loads((runs / "mixture-vae-seed0" / "metrics.json").read_text())["history"] == (
        history
    )


def test_the_digits_clustering_benchmark_prints_each_seeds_start_and_end_beside_kmeans(tmp_path):
    numbers = tmp_path / "numbers.json"
    extra = "--pretrain-epochs 1 --epochs 2 --hidden 16 --latent-dim 2"
    out = script(
        "mixture_vae_digits.py",
        *("--seeds", "0,1", "--extra", extra, "--out", str(tmp_path / "runs")),
        *("--json", str(numbers)),
    )
    assert "| **mean ± sd** |" in out and "target (mean >= 85%" in out
    runs = json.loads(numbers.read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for row in runs:
        assert row["epochs"] == 2 and 0 < row["init_accuracy"] <= 1
        assert row["lowest_accuracy"] <= min(row["init_accuracy"], row["final_accuracy"])
        # scikit-learn's k-means on the 8x8 pixels: the 78.6%, within a few test images
        assert row["kmeans_pixels"]["accuracy"] == pytest.approx(0.786, abs=0.01)
        assert f"seed {row['seed']}: mixture-prior VAE {100 * row['init_accuracy']:.2f}%" in out


#: A stand-in for Pyro's examples/dmm.py: its first run fails (as an unseeded run that
#: diverges does), the next writes the log line the benchmark reads.
FAKE_PYRO_EXAMPLE = """
import argparse, os, pathlib, pickle, sys
parser = argparse.ArgumentParser()
parser.add_argument("-n", type=int)
parser.add_argument("-l")
args = parser.parse_args()
home = pathlib.Path(os.environ["HOME"])
rolls = pickle.loads((home / ".data" / "jsb_chorales.pkl").read_bytes())
assert set(rolls) == {"train", "valid", "test"}
marker = home / "tried"
if not marker.exists():
    marker.write_text("once")
    sys.exit(1)
pathlib.Path(args.l).write_text("[val/test epoch 50]  12.5  12.25\\n")
"""


def test_the_chorales_benchmark_runs_our_dmm_and_retries_pyros_failed_run(tmp_path):
    from pyrovae.data.sequences import CACHE_VERSION

    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 11, 20)
    x = (rng.random((20, 10, 88)) < 0.05).astype(np.uint8)
    x[np.arange(10) >= lengths[:, None]] = 0
    names = np.array([f"piece{i}" for i in range(20)])
    np.savez(tmp_path / "chorales.npz", x=x, lengths=lengths, names=names, version=CACHE_VERSION)
    example = tmp_path / "dmm.py"
    example.write_text(FAKE_PYRO_EXAMPLE)
    out = tmp_path / "results.json"
    printed = script(
        "sequences_chorales.py", "--data-dir", str(tmp_path), "--epochs", "1", "--models",
        "floor,pyro-dmm,dmm", "--pyro-example", str(example), "--num-samples", "3",
        "--json", str(out),
    )  # fmt: skip
    assert "Pyro's example failed (exit 1)" in printed
    results = json.loads(out.read_text())["results"]
    pyro = results["pyro-dmm"]
    assert pyro["test_elbo_per_step"] == -12.25 and len(pyro["failed_attempts_seconds"]) == 1
    ours = results["dmm"]
    assert ours["test_log_likelihood_per_step"] < 0 and ours["test_kl_per_sequence"] > 0
    assert results["floor"]["test_log_likelihood_per_step"] < 0
    assert printed.splitlines()[-1].startswith("| dmm |")


def test_the_pretraining_codes_diagnosis_clusters_a_pretraining_checkpoints_codes(
    tmp_path, monkeypatch, interrupt_pretraining
):
    """A digits run stopped in its second pretraining epoch leaves a checkpoint marked
    ``phase: initializing``; the script clusters its encoder's codes three ways. A trained
    run's checkpoint (past its pretraining) is refused."""
    interrupt_pretraining(1)
    run = tmp_path / "run"
    args = ["train", "mixture-vae", "--out", str(run), "--pretrain-epochs", "3", *SMALL]
    assert main([*args, "--epochs", "1"]) == 130
    snapshot = tmp_path / "pretrain-epoch1.pt"
    snapshot.write_bytes((run / "checkpoint.pt").read_bytes())
    numbers = tmp_path / "codes.json"
    out = script("mixture_vae_pretraining_codes.py", str(snapshot), "--dataset", "digits",
                 "--json", str(numbers), "--restarts", "3")  # fmt: skip
    (row,) = json.loads(numbers.read_text())
    assert row["epoch"] == 1 and row["pretrain"] == "dae"
    for kind in ("em_diag", "em_full", "kmeans"):
        assert 0.1 < row[kind]["accuracy"] <= 1 and -1 <= row[kind]["adjusted_rand_index"] <= 1
    assert f"| pretrain-epoch1.pt | 1 | {100 * row['em_diag']['accuracy']:.2f}%" in out
    starts = row["kmeans_starts"]  # --restarts 3: three single k-means starts, seeds 0, 1, 2
    assert [s["seed"] for s in starts] == [0, 1, 2]
    assert all(s["inertia"] > 0 and 0.1 < s["accuracy"] <= 1 for s in starts)
    best = min(starts, key=lambda s: s["inertia"])
    assert f"3 k-means starts, test accuracy {100 * min(s['accuracy'] for s in starts):.2f}%" in out
    assert f"the lowest inertia's {100 * best['accuracy']:.2f}%" in out
    monkeypatch.undo()
    assert main(["train", "mixture-vae", "--out", str(run), "--resume"]) == 0
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mixture_vae_pretraining_codes.py"),
         str(run / "checkpoint.pt"), "--dataset", "digits"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert refused.returncode != 0 and "not a checkpoint taken while" in refused.stderr


def test_the_pretraining_codes_start_score_is_the_mixture_of_its_clusters_gaussians(tmp_path):
    """The diagnosis scores a single k-means start by the mean log p(z) of the codes under the
    prior the model's ``initialize_prior_from_clusters`` sets from its clusters (``--init
    code-kmeans --covariance full``): the mixture whose component k is the maximum-likelihood
    Gaussian of the codes of cluster k (plus 1e-6 on the diagonal), weighted by their share.
    Checked against that mixture written out here with torch's MultivariateNormal, for a
    run trained with diagonal covariances (the score is full whatever the run's own)."""
    import math

    import torch

    from pyrovae.kmeans import kmeans
    from pyrovae.runs import load_run

    spec = importlib.util.spec_from_file_location(
        "mixture_vae_pretraining_codes", ROOT / "benchmarks" / "mixture_vae_pretraining_codes.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = tmp_path / "run"
    args = ["train", "mixture-vae", "--out", str(run), "--pretrain-epochs", "1", "--epochs", "1"]
    assert main([*args, "--covariance", "diag", *SMALL]) == 0
    prior = module.code_kmeans_prior(load_run(run).config)
    assert prior.covariance == "full" and prior.mixture.loc.dtype == torch.float64
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(400, 4, generator=generator, dtype=torch.float64)
    codes[:200] += 4.0  # two groups apart, split by k-means into ten clusters
    test = torch.randn(50, 4, generator=generator, dtype=torch.float64)
    scores = module.start_scores(prior, codes, test, torch.arange(50) % 10, seed=3)

    labels = kmeans(codes, 10, n_init=1, generator=torch.Generator().manual_seed(3)).labels
    eye = torch.eye(4, dtype=torch.float64)
    terms = []
    for c in range(10):
        z = codes[labels == c]
        covariance = torch.cov(z.T, correction=0) + 1e-6 * eye
        gaussian = torch.distributions.MultivariateNormal(z.mean(0), covariance)
        terms.append(gaussian.log_prob(codes) + math.log(len(z) / len(codes)))
    expected = float(torch.stack(terms).logsumexp(0).mean())
    assert scores["code_log_likelihood"] == pytest.approx(expected, rel=1e-9)
    assert scores["seed"] == 3 and scores["inertia"] > 0
