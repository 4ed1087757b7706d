"""``pyrovae compare``: eval.json's per-example log p(x) and test-row digest, az.compare's table
on them checked against a hand computation, and the refusals (different test rows, an
eval.json from before the per-example values, a run without log p(x)). One run is trained;
the other "runs" are copies of its eval.json with known changes."""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pytest
import torch

from pyrovae.cli import main
from pyrovae.infer import log_marginal
from pyrovae.runs import load_run
from pyrovae.runs.comparison import compare_runs, rows_digest

K = 20


def train(out, *extra):
    args = ["train", "vae", "--out", str(out), "--epochs", "1", "--hidden", "16", "--quiet"]
    assert main([*args, "--no-figures", *extra]) == 0
    assert main(["evaluate", str(out), "--num-samples", str(K), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One trained and evaluated run, and copies of its eval.json standing for a second model
    (each example's log p(x) moved by a known amount) and for a run on other test rows."""
    root = tmp_path_factory.mktemp("compare")
    run = train(root / "vae", "--latent-dim", "2")
    report = json.loads((run / "eval.json").read_text())
    rng = np.random.default_rng(0)
    shifted = np.array(report["per_example"]["log_likelihood"]) - 0.3 + rng.normal(0, 0.2, 360)
    other = root / "other_model"
    other.mkdir()
    (other / "eval.json").write_text(
        json.dumps({**report, "per_example": {"log_likelihood": shifted.tolist()}})
    )
    rows = root / "other_rows"
    rows.mkdir()
    test_rows = {**report["test_rows"], "sha256": "0" * 64}
    (rows / "eval.json").write_text(json.dumps({**report, "test_rows": test_rows}))
    return run, other, rows


def per_example(run_dir) -> np.ndarray:
    report = json.loads((run_dir / "eval.json").read_text())
    return np.array(report["per_example"]["log_likelihood"])


def test_eval_json_records_the_test_rows_and_each_examples_log_likelihood(runs):
    run_dir = runs[0]
    report = json.loads((run_dir / "eval.json").read_text())
    run = load_run(run_dir)
    assert report["test_rows"] == rows_digest(run.test_inputs())
    assert report["test_rows"]["num_examples"] == 360
    pyro.set_rng_seed(0)  # evaluate's default seed
    direct = log_marginal(run.model, run.guide, run.test_inputs(), num_samples=K, progress=False)
    values = report["per_example"]
    np.testing.assert_allclose(values["log_likelihood"], direct.log_likelihood.numpy(), atol=1e-9)
    np.testing.assert_allclose(values["stderr"], direct.stderr.numpy(), atol=1e-12)
    khat = np.array([math.nan if v is None else v for v in values["khat"]])  # JSON: null
    want = direct.khat.numpy()
    np.testing.assert_allclose(khat, np.where(np.isfinite(want), want, math.nan), atol=1e-12)
    assert np.mean(values["log_likelihood"]) == pytest.approx(report["test_log_likelihood"])


def test_the_table_is_az_compare_on_the_same_examples_checked_by_hand(runs, capsys):
    two, four = runs[0], runs[1]  # a trained run, and its values shifted
    table, n = compare_runs([two, four])
    a, b = per_example(two), per_example(four)
    assert n == 360 == len(a)
    best, other = (two, four) if a.sum() > b.sum() else (four, two)
    assert list(table.index) == [str(best), str(other)]
    diff = per_example(best) - per_example(other)
    assert table.loc[str(other), "elpd_diff"] == pytest.approx(diff.sum())
    # The paired standard error of the summed difference: sqrt(N var(diff)).
    assert table.loc[str(other), "dse"] == pytest.approx(math.sqrt(n * diff.var()))
    assert table.loc[str(best), "elpd_loo"] == pytest.approx(per_example(best).sum())
    assert table.loc[str(best), "se"] == pytest.approx(math.sqrt(n * per_example(best).var()))
    assert main(["compare", str(two), str(four)]) == 0
    out = capsys.readouterr().out
    assert str(two) in out and str(four) in out and "paired standard error" in out
    assert f"{diff.sum():.2f}" in out and f"{math.sqrt(n * diff.var()):.2f}" in out


def test_the_digest_tells_test_rows_apart():
    x = torch.arange(12.0).reshape(4, 3)
    assert rows_digest(x) == rows_digest(x.clone())
    assert rows_digest(x)["num_examples"] == 4
    for other in (x.flip(0), x[:3], x.double(), (x, torch.ones(4))):
        assert rows_digest(other)["sha256"] != rows_digest(x)["sha256"]


def test_runs_on_different_test_rows_are_refused(runs, capsys):
    assert main(["compare", str(runs[0]), str(runs[2])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1
    assert "different test rows" in err and "--test-fraction" in err


def test_an_old_eval_json_and_a_run_without_log_likelihood_are_refused_clearly(
    runs, tmp_path, capsys
):
    old = tmp_path / "old"
    old.mkdir()
    report = json.loads((runs[0] / "eval.json").read_text())
    del report["per_example"], report["test_rows"]
    (old / "eval.json").write_text(json.dumps(report))
    assert main(["compare", str(old), str(runs[1])]) == 2
    err = capsys.readouterr().err
    assert "written before pyrovae recorded them" in err and f"pyrovae evaluate {old}" in err
    (old / "eval.json").write_text(json.dumps({"test_log_likelihood": None, "estimand": "x"}))
    assert main(["compare", str(old), str(runs[1])]) == 2
    assert "has no log p(x) to compare" in capsys.readouterr().err
    assert main(["compare", str(runs[1]), str(tmp_path / "nothing")]) == 2
    assert "evaluate it first" in capsys.readouterr().err
    assert main(["compare", str(runs[1])]) == 2
    assert "at least two" in capsys.readouterr().err
