"""examples/fit_gmm.py and examples/custom_model.py run as users run them (subprocesses, tiny
arguments), write every figure they promise, and custom_model's factory trains and evaluates
from the command line."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pyro
import pytest
from contract import Pair, PairContract
from images import assert_png

from pyrovae.cli import main
from pyrovae.data import DataSplits, load_dataset
from pyrovae.infer import log_marginal
from pyrovae.runs import load_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

FIT_GMM_TINY = [
    "--components", "2,3", "--pca-dim", "3", "--n-init", "1", "--max-iter", "20",
    "--svi-epochs", "2", "--quiet",
]  # fmt: skip
FIT_GMM_FIGURES = {
    "bic.png",
    "em_vs_svi.png",
    "em.png",
    "components_em.png",
    "components_svi.png",
    "means.png",
    "responsibilities.png",
    "clusters.png",
}
CUSTOM_TINY = [
    "--latent-dim", "3", "--hidden", "16", "--epochs", "2", "--num-samples", "20", "--quiet",
]  # fmt: skip
#: pyrovae's own figures for a pair with a continuous latent, drawn unchanged.
PYROVAE_FIGURES = {
    "elbo.png",
    "samples.png",
    "reconstructions.png",
    "traversals.png",
    "interpolation.png",
    "latent_space.png",
}
CUSTOM_FIGURES = PYROVAE_FIGURES | {"parts.png", "khat.png"}


def run_example(script: str, *args: str) -> subprocess.CompletedProcess:
    """``python examples/SCRIPT ARGS`` from the repository root, as the docstrings say."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@functools.cache
def custom_model() -> ModuleType:
    """examples/custom_model.py imported as a module (its script part does not run)."""
    spec = importlib.util.spec_from_file_location("custom_model", EXAMPLES / "custom_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def digits() -> DataSplits:
    return load_dataset("digits")


class TestPoissonFactorAnalysisFollowsThePairContract(PairContract):
    """tests/contract.py for the example's pair, built by its factory on 64 digits."""

    def make_pair(self):
        model, guide = custom_model().factory(64, 3, (16,), digits())
        return Pair(model, guide, (digits().train_x[:64],))


def assert_figures(folder: Path, names: set[str]) -> None:
    written = {p.name for p in folder.glob("*.png")}
    assert names <= written, f"missing figures: {sorted(names - written)}"
    for name in names:
        assert_png(folder / name)


@pytest.mark.parametrize("script", ["fit_gmm.py", "custom_model.py"])
def test_help_describes_the_options(script):
    text = run_example(script, "--help").stdout
    for option in ("--out", "--seed", "--quiet", "--dataset", "--data-dir"):
        assert option in text


def test_fit_gmm_chooses_k_by_bic_fits_em_and_svi_and_draws(tmp_path):
    result = run_example("fit_gmm.py", *FIT_GMM_TINY, "--out", str(tmp_path))
    assert_figures(tmp_path, FIT_GMM_FIGURES)
    out = result.stdout
    chosen = re.search(r"chosen K = (\d+) \(lowest BIC", out)
    assert chosen and chosen.group(1) in ("2", "3"), out
    for name in ("EM", "TraceEnum SVI"):  # exact train and test log p(x), adjusted Rand index
        row = re.search(rf"^{name}\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)$", out, re.M)
        assert row and all(math.isfinite(float(v)) for v in row.groups()), out
    assert "/s]" not in result.stderr  # --quiet: no progress bars


def test_custom_model_fits_estimates_and_draws(tmp_path):
    result = run_example("custom_model.py", *CUSTOM_TINY, "--out", str(tmp_path))
    assert_figures(tmp_path, CUSTOM_FIGURES)
    out = result.stdout
    assert "counts out of L = 16" in out
    values = {}
    for label in ("IS K=20, guide", "IS K=20, prior", "independent Poisson pixels, no latent"):
        value = re.search(re.escape(label) + r"\s+(-?\d+\.\d+)", out)
        assert value, out
        values[label] = float(value.group(1))
    # The baseline, recomputed here: every pixel its own Poisson at its training mean count.
    example = custom_model()
    data = load_dataset("digits")
    baseline = example.independent_poisson(data.train_x, data.test_x, 16.0)
    assert values["independent Poisson pixels, no latent"] == pytest.approx(baseline, abs=0.006)
    assert math.isfinite(values["IS K=20, guide"]) and math.isfinite(values["IS K=20, prior"])
    assert "/s]" not in result.stderr


def test_custom_model_factory_trains_and_evaluates_from_the_cli(tmp_path, monkeypatch):
    """The docstring's commands, ``pyrovae train custom_model:factory`` with the examples
    folder on the path (one epoch), then ``pyrovae evaluate`` on the run."""
    docstring = (EXAMPLES / "custom_model.py").read_text()
    assert "export PYTHONPATH=examples" in docstring
    assert "pyrovae train custom_model:factory" in docstring
    monkeypatch.syspath_prepend(str(EXAMPLES))
    run = tmp_path / "poisson-fa"
    args = ["--latent-dim", "3", "--hidden", "16", "--epochs", "1", "--quiet"]
    assert main(["train", "custom_model:factory", *args, "--out", str(run)]) == 0
    assert {p.name for p in run.iterdir()} == {
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "figures",
        ".lock",
    }
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "custom_model:factory" and config["latent_dim"] == 3
    assert config["binarize"] == "none"
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert len(history) == 1 and math.isfinite(history[0]["test_elbo"])
    assert_figures(run / "figures", PYROVAE_FIGURES)

    named = ["--factory", "custom_model:factory"]
    assert "pyrovae evaluate runs/poisson-fa --num-samples 1000 --factory" in docstring
    assert main(["evaluate", str(run), "--num-samples", "20", "--quiet", *named]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["num_samples"] == 20
    # eval.json holds log_marginal's numbers, draw for draw with the same seed.
    loaded = load_run(run, factory="custom_model:factory")
    pyro.set_rng_seed(0)
    direct = log_marginal(
        loaded.model, loaded.guide, loaded.test_inputs(), num_samples=20, progress=False
    )
    assert report["test_log_likelihood"] == pytest.approx(direct.mean(), abs=1e-9)
    assert report["test_elbo"] == pytest.approx(float(direct.elbo.mean()), abs=1e-9)


def test_custom_model_factory_refuses_binarized_mnist(tmp_path, monkeypatch, shared_data, capsys):
    """MNIST under --likelihood auto would be binarized; the factory says how to keep counts."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    run = tmp_path / "mnist"
    mnist = ["--dataset", "mnist", "--data-dir", str(shared_data / "mnist")]
    assert main(["train", "custom_model:factory", *mnist, "--quiet", "--out", str(run)]) == 2
    assert "--likelihood gaussian" in capsys.readouterr().err
    assert not run.exists()
