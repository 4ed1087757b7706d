"""pyrovae.diagnostics.elpd: held-out per-example log p(x) as the ELPDData az.compare takes.

Oracle: z ~ N(0, 1), x | z ~ N(z, s^2), so log p(x) = log N(x; 0, 1 + s^2) exactly; the
guide N(0, 2^2) proposes. Model a has the data's s = 0.5, model b assumes s = 1."""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from arviz_quiet import az

from pyrovae.diagnostics import elpd
from pyrovae.infer import log_marginal

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def compare(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ArviZ's own pandas calls
        return az().compare(data)


def pair(noise):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, noise).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros_like(x), 2.0).to_event(1))

    return model, guide


def test_az_compare_ranks_two_models_with_the_paired_standard_error_by_hand():
    x = torch.randn(300, 1) * math.sqrt(1 + 0.5**2)
    a = log_marginal(*pair(0.5), x, num_samples=200, progress=False)
    b = log_marginal(*pair(1.0), x, num_samples=200, progress=False)
    table = compare({"true_noise": elpd(a), "wrong_noise": elpd(b)})
    assert list(table.index) == ["true_noise", "wrong_noise"]
    la, lb = a.log_likelihood.numpy(), b.log_likelihood.numpy()
    diff = la - lb
    assert table.loc["true_noise", "elpd_loo"] == pytest.approx(la.sum())
    assert table.loc["true_noise", "se"] == pytest.approx(math.sqrt(300 * la.var()))
    assert table.loc["wrong_noise", "elpd_diff"] == pytest.approx(diff.sum())
    assert table.loc["wrong_noise", "dse"] == pytest.approx(math.sqrt(300 * diff.var()))
    # The exact difference is within a few paired standard errors of the estimate.
    exact = {s: dist.Normal(0.0, math.sqrt(1 + s**2)).log_prob(x[:, 0]).numpy() for s in (0.5, 1)}
    truth = (exact[0.5] - exact[1]).sum()
    assert abs(diff.sum() - truth) < 4 * table.loc["wrong_noise", "dse"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ArviZ's own pandas calls
        ax = az().plot_compare(table)
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["true_noise", "wrong_noise"]
    matplotlib.pyplot.close("all")


def test_the_elpd_data_holds_the_per_example_values_and_khat():
    x = torch.randn(40, 1)
    result = log_marginal(*pair(0.5), x, num_samples=100, progress=False)
    data = elpd(result)
    np.testing.assert_array_equal(data["loo_i"].values, result.log_likelihood.numpy())
    np.testing.assert_array_equal(data["pareto_k"].values, result.khat.numpy())
    assert data["n_data_points"] == 40 and data["n_samples"] == 100
    assert data["warning"] == bool((result.khat > 0.7).any())
    assert math.isnan(data["p_loo"]) and data["scale"] == "log"
    plain = elpd([-1.0, -2.0, -3.0], num_samples=5)
    assert plain["elpd_loo"] == -6.0 and "pareto_k" not in plain and not plain["warning"]


def test_elpd_refuses_missing_or_masked_examples():
    with pytest.raises(ValueError, match="non-finite"):
        elpd([0.0, math.nan])
    with pytest.raises(ValueError, match="non-finite"):
        elpd([])
    x = torch.randn(4, 1)
    result = log_marginal(*pair(0.5), x, num_samples=10, progress=False)
    result.masked = torch.tensor([False, True, False, False])
    with pytest.raises(ValueError, match="leaves out examples"):
        elpd(result)


def test_per_example_values_from_a_list_stay_in_float64():
    """eval.json's values come as Python floats: 1e8 + 0.5 is not a float32."""
    torch.set_default_dtype(torch.float32)  # as in a user's session
    data = elpd([1e8 + 0.5, 1.0])
    assert data["elpd_loo"] == 1e8 + 1.5
    np.testing.assert_array_equal(data["loo_i"].values, [1e8 + 0.5, 1.0])
