"""Slow: the default quick-start run reaches a good test ELBO on digits."""

import json

import pytest

from pyrovae.cli import main


@pytest.mark.slow
def test_default_digits_run_reaches_a_good_test_elbo(tmp_path):
    out = tmp_path / "vae"
    assert main(["train", "vae", "--out", str(out), "--quiet"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    # Continuous-Bernoulli log densities on [0, 1] are positive; the README quotes 92.2 nats
    # after the default 100 epochs.
    assert len(history) == 100
    assert history[-1]["test_elbo"] > 90
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 50
