"""The example scripts run as a user runs them (a subprocess, tiny settings) and write their
figures; every script answers --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from images import assert_png

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_figures(out: Path, names: set[str]) -> None:
    for name in names:
        path = out / name
        assert path.is_file(), f"{name} missing"
        assert_png(path)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_script_opens_with_its_math_and_answers_help(script, tmp_path):
    text = script.read_text()
    assert text.startswith(('"""', 'r"""')), "a script opens with its docstring"
    assert f"examples/{script.name}" in text.split('"""')[1], "the docstring says how to run it"
    assert "usage:" in run(script.name, "--help", cwd=tmp_path)


def test_train_vae_writes_its_figures_and_the_log_likelihood(tmp_path):
    out = tmp_path / "vae"
    stdout = run(
        "train_vae.py",
        *("--epochs", "2", "--latent-dim", "2", "--hidden", "16", "--num-samples", "10"),
        *("--eval-images", "20", "--beta", "2", "--quiet", "--out", str(out)),
        cwd=tmp_path,
    )
    assert_figures(
        out,
        {"elbo.png", "samples.png", "reconstructions.png", "traversals.png", "latent_space.png"},
    )
    assert "test log p(x), IS with K = 10 on 20 images" in stdout


def test_train_ssvae_writes_its_figures_and_compares_with_the_classifier_alone(tmp_path):
    out = tmp_path / "ssvae"
    stdout = run(
        "train_ssvae.py",
        *("--epochs", "2", "--latent-dim", "4", "--hidden", "16", "--num-samples", "5"),
        *("--num-labels", "30", "--quiet", "--out", str(out)),
        cwd=tmp_path,
    )
    assert_figures(
        out, {"elbo.png", "accuracy.png", "confusion.png", "conditional.png", "analogies.png"}
    )
    assert "30 labelled" in stdout and "the classifier alone on the 30 labels" in stdout


def test_hmm_sums_its_states_exactly_and_decodes_them(tmp_path):
    out = tmp_path / "hmm"
    stdout = run(
        "hmm.py",
        *("--sequences", "100", "--length", "8", "--epochs", "3", "--quiet", "--out", str(out)),
        cwd=tmp_path,
    )
    assert_figures(out, {"elbo.png", "viterbi.png"})
    assert "objective read from the program: enum" in stdout
    numbers = {
        line.split(":")[0]: float(line.split(":")[1].split()[0])
        for line in stdout.splitlines()
        if line.startswith(("test log p(x)", "largest per-sequence"))
    }
    # log_marginal's exact sum equals the forward algorithm written by hand (float32).
    assert numbers["largest per-sequence difference"] < 1e-3
    assert numbers["test log p(x), log_marginal"] == pytest.approx(
        numbers["test log p(x), forward algorithm by hand"], abs=1e-3
    )
    assert "(standard error 0.0e+00)" in stdout
