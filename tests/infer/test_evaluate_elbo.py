"""``evaluate_elbo`` against exact values: the held-out ELBO per example over several batches,
with global latents weighed as a subsample of the rows, and each rank's share summed across
ranks. Oracles are exact because the one-sample ELBO has no variance here: the guide is the
exact posterior (log p(x, z) - log q(z | x) = log p(x) at every z) or a point mass."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae.infer import evaluate, evaluate_elbo

S = 0.5  # x | z ~ N(z, S^2), z ~ N(0, 1): p(x) = N(0, 1 + S^2), z | x ~ N(x / (1 + S^2), ...)


def local_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, S), obs=x)


def exact_posterior(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / (1 + S**2), (S**2 / (1 + S**2)) ** 0.5))


def log_px(x: torch.Tensor) -> torch.Tensor:
    return dist.Normal(0.0, (1 + S**2) ** 0.5).log_prob(x)


X = torch.tensor([-1.2, 0.3, 2.0, 0.7, -0.4], dtype=torch.float64)


def test_the_mean_over_batches_of_unequal_size_is_the_mean_per_example():
    got = evaluate_elbo(local_model, exact_posterior, X, batch_size=2)  # batches of 2, 2, 1
    assert got == pytest.approx(float(log_px(X).mean()), abs=1e-6)


def test_the_bound_is_of_the_unscaled_programs():
    """``poutine.scale`` on the model and the guide (a beta-VAE's weight, a user's annealing)
    is a training device: the held-out number is each example's own ELBO, here log p(x)."""
    model, guide = poutine.scale(local_model, 3.0), poutine.scale(exact_posterior, 3.0)
    for plate in (None, "data"):  # weighed as a subsample of the rows, the same bound
        got = evaluate_elbo(model, guide, X, batch_size=2, global_plate=plate)
        assert got == pytest.approx(float(log_px(X).mean()), abs=1e-6), plate


THETA = torch.tensor(0.8, dtype=torch.float64)  # the point mass of the global latent's guide


def global_model(x):
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(theta, 1.0), obs=x)


def point_mass_guide(x):
    pyro.sample("theta", dist.Delta(THETA))


def test_a_global_latent_is_counted_once_over_all_batches():
    """ELBO of the N rows with q(theta) a point mass: sum_n log p(x_n | theta) + log p(theta),
    per example. Batches of 2 of the 5 rows, each a subsample scaled by N / B; weighed per
    batch, the prior would count once per batch (three times) instead."""
    want = (dist.Normal(THETA, 1.0).log_prob(X).sum() + dist.Normal(0.0, 1.0).log_prob(THETA)) / 5
    got = evaluate_elbo(global_model, point_mass_guide, X, batch_size=2, global_plate="data")
    assert got == pytest.approx(float(want), abs=1e-6)
    per_batch = evaluate_elbo(global_model, point_mass_guide, X, batch_size=2)
    assert per_batch != pytest.approx(float(want), abs=1e-3)  # what the weighing corrects


def test_a_global_latent_on_rows_that_cannot_be_counted_is_refused():
    class Stream(torch.utils.data.IterableDataset):  # rows arrive one by one, uncounted
        def __iter__(self):
            return iter(X)

    rows = Stream()
    with pytest.raises(ValueError, match="whose rows can be counted"):
        evaluate_elbo(global_model, point_mass_guide, rows, global_plate="data")


def test_a_rank_evaluates_its_share_and_the_sums_are_added_across_ranks(monkeypatch):
    """Rank 1 of two, in this process, on 3 rows: its share is row 2 alone; rank 0's sums
    (rows 0 and 1) come in through a stand-in for the all-reduce."""
    x = X[:3]
    theirs = [float(log_px(x[:2]).sum()), 2]
    seen = []

    def all_reduce_sums(values):
        seen.append([float(v) for v in values])
        return [float(values[0]) + theirs[0], values[1] + theirs[1]]

    monkeypatch.setattr(evaluate, "world", lambda: (1, 2))
    monkeypatch.setattr(evaluate, "all_reduce_sums", all_reduce_sums)
    got = evaluate_elbo(local_model, exact_posterior, x)
    assert seen == [[pytest.approx(float(log_px(x[2])), abs=1e-6), 1]]  # row 2 alone
    assert got == pytest.approx(float(log_px(x).mean()), abs=1e-6)
    assert not math.isnan(got)
