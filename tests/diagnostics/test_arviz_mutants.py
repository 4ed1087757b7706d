"""The ArviZ export's layout, defaults and the paired comparison, exactly: gaps that mutation
testing (benchmarks/mutation.py) found, since tests/diagnostics/test_arviz.py checks the
numbers inside the export but not every name, dim, attribute and default around them.

The oracle pair is test_arviz.py's conjugate model with a two-dimensional latent:
z ~ N(0, I), x | z ~ N(z, 0.5^2 I), proposed from q(z | x) = N(0, 2^2 I); float64.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.diagnostics import compare_log_likelihoods, to_inference_data
from pyrovae.infer import log_marginal

X = torch.tensor([[1.5, 0.2], [0.0, -0.3], [-1.0, 0.4], [2.0, 1.0]], dtype=torch.float64)


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros_like(x), 2.0).to_event(1))


@pytest.mark.parametrize("resample", [True, False])
def test_every_group_variable_dim_and_attribute_of_the_export(resample):
    k, examples = 40, [2, 0]
    idata = to_inference_data(model, guide, X, examples=examples, num_samples=k, resample=resample)
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data", "constant_data"}

    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "example", "z_dim_0") and z.shape == (2, k // 2, 2, 2)
    assert idata.posterior.coords["example"].values.tolist() == examples

    stats = idata.sample_stats
    per_draw = {"guide_draw", "log_weight"} if resample else {"log_weight", "weight"}
    assert set(stats.data_vars) == per_draw | {"importance_ess", "importance_khat"}
    for name in per_draw:
        assert stats[name].dims == ("chain", "draw", "example"), name
    for name in ("importance_ess", "importance_khat"):
        assert stats[name].dims == ("example",), name
    assert stats.coords["example"].values.tolist() == examples

    constant = idata.constant_data
    assert set(constant.data_vars) == {"log_marginal", "log_likelihood_stderr", "ess", "khat"}
    for name in constant.data_vars:
        assert constant[name].dims == ("all_examples",) and constant[name].shape == (4,), name
    assert constant.attrs["estimand"] == "log p(x)"

    observed = idata.observed_data["x"]
    assert observed.dims[0] == "all_examples"
    np.testing.assert_array_equal(observed.values, X.numpy())

    assert {key: idata.attrs[key] for key in ("num_samples", "resampled", "proposal")} == {
        "num_samples": k,
        "resampled": int(resample),
        "proposal": "guide",
    }
    if resample:
        draws = (
            "40 draws resampled from 40 guide draws by their importance weights, copies "
            "adjacent, stored as 2 chains of consecutive halves; equally weighted, worth "
            "sample_stats.importance_ess independent draws"
        )
    else:
        draws = (
            "40 draws of the guide q(z | x) (2 chains of consecutive halves), to be weighted "
            "by sample_stats.weight"
        )
    assert idata.posterior.attrs["draws"] == draws


def test_the_log_marginals_are_log_marginal_with_the_same_draws_per_example():
    """The export's constant_data is log_marginal at K = num_samples, from the same stream."""
    pyro.set_rng_seed(5)
    idata = to_inference_data(model, guide, X, examples=[0], num_samples=50)
    pyro.set_rng_seed(5)
    marginal = log_marginal(model, guide, X, num_samples=50, progress=False)
    constant = idata.constant_data
    np.testing.assert_array_equal(constant["log_marginal"].values, marginal.log_likelihood)
    np.testing.assert_array_equal(constant["log_likelihood_stderr"].values, marginal.stderr)
    np.testing.assert_array_equal(constant["ess"].values, marginal.ess)
    np.testing.assert_array_equal(constant["khat"].values, marginal.khat)


def test_the_defaults_are_1000_draws_seed_0_and_no_progress_bar(capsys):
    idata = to_inference_data(model, guide, X)
    assert capsys.readouterr().err == ""  # log_marginal's bar is on by default: turned off
    assert idata.posterior["z"].shape == (2, 500, 4, 2)
    assert idata.attrs["num_samples"] == 1000
    assert idata.posterior.coords["example"].values.tolist() == [0, 1, 2, 3]
    seeded = to_inference_data(model, guide, X, seed=0)
    np.testing.assert_array_equal(idata.posterior["z"].values, seeded.posterior["z"].values)
    other = to_inference_data(model, guide, X, seed=1)
    assert not np.array_equal(idata.posterior["z"].values, other.posterior["z"].values)


def test_the_paired_comparison_by_hand():
    """Differences (0.5, 0, -1, 2.5): mean 0.5, sd sqrt(6.5 / 3), a better on 2 of 4 (a tie
    is not better)."""
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.5, 2.0, 4.0, 1.5])
    result = compare_log_likelihoods(a, b)
    assert result["mean_difference"] == pytest.approx(0.5, abs=1e-15)
    assert result["stderr"] == pytest.approx(math.sqrt(6.5 / 3) / 2, rel=1e-14)
    assert result["share_a_better"] == 0.5


def test_the_paired_comparison_subtracts_in_float64():
    """float32 inputs whose difference float32 cannot hold: 1e8 - 1 and 1e8 - 3."""
    a = torch.tensor([1e8, 1e8], dtype=torch.float32)
    b = torch.tensor([1.0, 3.0], dtype=torch.float32)
    assert compare_log_likelihoods(a, b)["mean_difference"] == 1e8 - 2
