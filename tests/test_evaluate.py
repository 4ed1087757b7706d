"""pyrovae evaluate end to end, and the ArviZ conversion."""

import json
import warnings

import numpy as np
import pyro
import pytest
from images import assert_png

from pyrovae.cli import main
from pyrovae.diagnostics import to_inference_data
from pyrovae.infer import log_marginal
from pyrovae.runs import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    args = ["train", "vae", "--out", str(out), "--epochs", "3", "--hidden", "32"]
    assert main([*args, "--latent-dim", "3", "--quiet", "--no-figures"]) == 0
    return out


def test_evaluate_writes_eval_json_and_prints_the_table(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "50", "--quiet"]) == 0
    table = capsys.readouterr().out
    for row in ["test ELBO", "test log p(x), IS K=50", "ELBO gap", "mean ESS", "k-hat > 0.7"]:
        assert row in table
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["num_samples"] == 50 and report["num_examples"] == 360
    assert report["seed"] == 0
    # The numbers are log_marginal's, draw for draw, with the same seed.
    run = load_run(run_dir)
    pyro.set_rng_seed(0)
    direct = log_marginal(run.model, run.guide, run.test_inputs(), num_samples=50, progress=False)
    summary = direct.summary()
    assert report["test_log_likelihood"] == pytest.approx(summary["log_likelihood"], abs=1e-9)
    assert report["test_elbo"] == pytest.approx(summary["elbo"], abs=1e-9)
    assert report["test_log_likelihood_stderr"] == pytest.approx(direct.mean_stderr(), abs=1e-12)
    assert report["ess"]["mean"] == pytest.approx(float(direct.ess.mean()), abs=1e-9)
    assert report["khat"]["max"] == pytest.approx(float(direct.khat.max()), abs=1e-9)
    assert report["elbo_gap"] == pytest.approx(report["test_log_likelihood"] - report["test_elbo"])
    # The figures: k-hat of each of the 360 examples, and the worst example's weights.
    assert_png(run_dir / "figures" / "khat.png")
    assert_png(run_dir / "figures" / "weights_worst.png")
    # Evaluating again gives the same numbers (the draws are seeded).
    assert main(["evaluate", str(run_dir), "--num-samples", "50", "--quiet"]) == 0
    assert json.loads((run_dir / "eval.json").read_text()) == report


def test_evaluate_refuses_bad_arguments(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "0"]) == 2
    assert "--num-samples must be at least 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not a pyrovae run" in capsys.readouterr().err


def test_inference_data_has_posterior_draws_weights_and_log_marginals(run_dir, caplog):
    run = load_run(run_dir)
    x = run.test_inputs()[:40]
    idata = to_inference_data(run.model, run.guide, x, examples=[0, 5], num_samples=64)
    assert idata.posterior["z"].shape == (2, 32, 2, 3)  # chain, draw, example, latent
    assert idata.sample_stats["log_weight"].shape == (2, 32, 2)
    assert idata.sample_stats["guide_draw"].shape == (2, 32, 2)
    ess = idata.sample_stats["importance_ess"].values
    assert ess.shape == (2,) and ((ess >= 1) & (ess <= 64)).all()
    assert idata.constant_data["log_marginal"].shape == (40,)
    assert idata.constant_data["khat"].shape == (40,)
    assert "log_likelihood" not in idata.groups()  # no pointwise log-likelihood for az.loo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz as az

    summary = az.summary(idata, var_names=["z"])  # r-hat included: two chains, no warning
    assert "Shape validation failed" not in caplog.text
    assert len(summary) == 2 * 3
    # Resampled draws are copies of the raw guide draws (same seed, same guide draws).
    raw = to_inference_data(
        run.model, run.guide, x, examples=[0, 5], num_samples=64, resample=False
    )
    assert raw.posterior["z"].shape == (2, 32, 2, 3)
    index = idata.sample_stats["guide_draw"].values.reshape(64, 2)
    np.testing.assert_array_equal(
        idata.posterior["z"].values.reshape(64, 2, 3),
        raw.posterior["z"].values.reshape(64, 2, 3)[index, [0, 1]],
    )
