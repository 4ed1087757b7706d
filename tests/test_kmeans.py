"""Lloyd's k-means against scikit-learn's, and its fixed point, empty clusters and errors."""

from __future__ import annotations

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from pyrovae.kmeans import kmeans


def blobs(dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_blobs(600, n_features=dim, centers=4, cluster_std=1.0, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dim", [2, 10])
def test_kmeans_finds_scikit_learns_optimum_on_blobs(dim):
    x, _ = blobs(dim)
    fit = kmeans(x, 4, n_init=3, generator=generator())
    reference = KMeans(4, n_init=3, random_state=0).fit(x.numpy())
    assert fit.converged
    assert adjusted_rand_score(reference.labels_, fit.labels.numpy()) == 1.0
    assert fit.inertia == pytest.approx(reference.inertia_, rel=1e-9)


def test_the_fit_is_a_fixed_point_of_lloyds_two_steps():
    x, _ = blobs(3, seed=1)
    fit = kmeans(x, 6, tol=0.0, generator=generator(1))  # more centres than blobs
    distances = torch.cdist(x, fit.centres).square()
    assert torch.equal(fit.labels, distances.argmin(1))
    for j in range(6):
        assert torch.allclose(fit.centres[j], x[fit.labels == j].mean(0), atol=1e-12)
    assert fit.inertia == pytest.approx(float(distances.min(1).values.sum()), rel=1e-12)


def test_more_iterations_never_raise_the_cost():
    x, _ = blobs(5, seed=2)
    costs = [kmeans(x, 8, max_iter=m, generator=generator(2)).inertia for m in (1, 2, 4, 50)]
    assert costs == sorted(costs, reverse=True)


def test_an_empty_cluster_takes_the_worst_served_row():
    x, _ = blobs(2, seed=3)
    start = torch.tensor([[1e3, 1e3], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    fit = kmeans(x, 3, init=start)
    assert torch.bincount(fit.labels, minlength=3).min() > 0
    assert fit.centres.abs().max() < 100  # the far centre was moved onto the data


def test_the_same_generator_seed_gives_the_same_fit():
    x, _ = blobs(4, seed=4)
    first = kmeans(x, 5, n_init=2, generator=generator(7))
    second = kmeans(x, 5, n_init=2, generator=generator(7))
    assert torch.equal(first.centres, second.centres)
    assert torch.equal(first.labels, second.labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clusters": 700}, "1 <= K <= N"),
        ({"num_clusters": 3, "n_init": 0}, "at least 1"),
        ({"num_clusters": 3, "init": torch.zeros(2, 2)}, "init must be"),
        ({"num_clusters": 2, "init": torch.zeros(2, 2), "n_init": 2}, "n_init = 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    x, _ = blobs(2)
    with pytest.raises(ValueError, match=message):
        kmeans(x, **kwargs)
