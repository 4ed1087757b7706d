"""``pyrovae train gmm`` and ``pyrovae evaluate`` on a mixture, end to end as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from images import assert_png
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from pyrovae.cli import main
from pyrovae.data import load_dataset
from pyrovae.models import fit_mixture
from pyrovae.runs import load_run

MIXTURE_FIGURES = {"components.png", "responsibilities.png", "clusters.png", "em.png"}


@pytest.fixture
def blobs(tmp_path) -> Path:
    """A user's file: 600 labelled 2-D rows from 3 well-separated Gaussians."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    y = rng.integers(0, 3, 600)
    x = centres[y] + rng.normal(size=(600, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]])
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_components_sweep_picks_the_true_k_by_bic_and_evaluate_is_exact(tmp_path, blobs):
    out = tmp_path / "gmm"
    args = ["train", "gmm", "--dataset", str(blobs), "--components", "1,2,3,4,5", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "figures",
        ".lock",
    }
    config, metrics = read(out / "config.json"), read(out / "metrics.json")
    assert config["num_components"] == 3 == metrics["components"]
    sweep = metrics["sweep"]
    assert [row["components"] for row in sweep] == [1, 2, 3, 4, 5]
    assert min(sweep, key=lambda row: row["bic"])["components"] == 3
    assert metrics["adjusted_rand_index"]["test"] > 0.95
    curve = [row["train_log_likelihood"] for row in metrics["history"]]
    assert np.all(np.diff(curve) >= -1e-9)  # EM never decreases the log-likelihood
    figures = {p.name for p in (out / "figures").iterdir()}
    assert MIXTURE_FIGURES | {"bic.png"} <= figures

    # The saved model is the one trained, in float64: evaluate reproduces metrics.json exactly.
    assert main(["evaluate", str(out), "--quiet"]) == 0
    report = read(out / "eval.json")
    assert report["num_samples"] == 0 and report["elbo_gap"] == 0.0
    assert report["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"], abs=1e-9)
    run = load_run(out)
    with torch.no_grad():
        exact = run.model.log_prob(run.test_inputs()).mean().item()
    assert report["test_log_likelihood"] == pytest.approx(exact, abs=1e-9)


def test_the_cli_fit_is_fit_mixture_and_matches_scikit_learn(tmp_path, blobs):
    out = tmp_path / "gmm"
    cli = ["train", "gmm", "--dataset", str(blobs), "--components", "3", "--tol", "1e-8"]
    assert main([*cli, "--max-iter", "500", "--no-figures", "--quiet", "--out", str(out)]) == 0
    metrics = read(out / "metrics.json")
    data = load_dataset(str(blobs), seed=0, test_fraction=0.2)
    x = data.train_x.double()
    model, _ = fit_mixture(x, 3, tol=1e-8, max_iter=500, seed=0, progress=False)
    assert metrics["train_log_likelihood"] == pytest.approx(model.score(x), abs=1e-9)
    sk = SkGaussianMixture(3, tol=1e-8, max_iter=500, random_state=0).fit(x.numpy())
    assert metrics["train_log_likelihood"] == pytest.approx(sk.score(x.numpy()), abs=1e-4)


def test_digits_clusters_are_reported_with_images(tmp_path):
    out = tmp_path / "digits"
    args = ["train", "gmm", "--covariance", "diag", "--components", "10", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    metrics = read(out / "metrics.json")
    assert 0.2 < metrics["adjusted_rand_index"]["test"] < 1.0  # reasonably, not perfectly
    assert metrics["num_parameters"] == 9 + 10 * 64 + 10 * 64
    figures = {p.name for p in (out / "figures").iterdir()}
    assert MIXTURE_FIGURES | {"means.png", "samples.png"} <= figures
    assert main(["sample", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert_png(tmp_path / "s.png", grid=(4, 4))


def test_trace_enum_svi_trains_the_same_program_and_resumes(tmp_path, blobs):
    out = tmp_path / "svi"
    args = ["train", "gmm", "--dataset", str(blobs), "--components", "3", "--inference", "svi"]
    args += ["--lr", "0.05", "--quiet", "--out", str(out)]
    assert main([*args, "--epochs", "2"]) == 0
    assert main([*args, "--epochs", "30", "--resume"]) == 0
    metrics = read(out / "metrics.json")
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, 31))
    assert read(out / "config.json")["objective"] == "enum"
    em_out = tmp_path / "em"
    main(
        [
            "train",
            "gmm",
            "--dataset",
            str(blobs),
            "--components",
            "3",
            "--quiet",
            "--out",
            str(em_out),
        ]
    )
    em_test = read(em_out / "metrics.json")["test_log_likelihood"]
    # With z summed out, the SVI run's test "ELBO" is the exact log p(x), close to EM's optimum.
    assert metrics["history"][-1]["test_elbo"] == pytest.approx(em_test, abs=0.05)
    assert main(["evaluate", str(out), "--quiet"]) == 0
    assert read(out / "eval.json")["test_log_likelihood"] == pytest.approx(
        metrics["history"][-1]["test_elbo"], abs=1e-3
    )


def test_bad_mixture_requests_get_clear_errors_and_leave_nothing(tmp_path, blobs, capsys):
    out = tmp_path / "run"
    base = ["train", "gmm", "--dataset", str(blobs), "--quiet", "--out", str(out)]
    assert main([*base, "--components", "9999"]) == 2
    assert "exceed the 480 training rows" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main([*base, "--components", "0"])
    assert "positive numbers of components" in capsys.readouterr().err
    assert main([*base, "--components", "3", "--max-iter", "0"]) == 2
    assert "--max-iter must be at least 1" in capsys.readouterr().err
    assert main([*base, "--components", "3"]) == 0
    assert main([*base, "--components", "3", "--resume"]) == 2
    assert "does not resume" in capsys.readouterr().err
    assert main([*base, "--components", "3"]) == 2  # an existing run is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
