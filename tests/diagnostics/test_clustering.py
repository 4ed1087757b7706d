"""Clustering scores against brute force and against scikit-learn, and their refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pyrovae.diagnostics.clustering import (
    cluster_accuracy,
    clustering_scores,
    count_matrix,
    hungarian_match,
    matched_clusters,
)


def brute_force_accuracy(clusters: np.ndarray, labels: np.ndarray, k: int) -> float:
    """max over every one-to-one map of clusters to labels (k! of them)."""
    best = 0
    for perm in itertools.permutations(range(k)):
        best = max(best, int(sum(np.asarray(perm)[clusters] == labels)))
    return best / len(labels)


@pytest.mark.parametrize("seed", range(5))
def test_the_hungarian_match_is_the_best_of_every_permutation(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 300)
    noisy = np.where(rng.random(300) < 0.4, rng.integers(0, 5, 300), labels)
    clusters = rng.permutation(5)[noisy]  # renamed: the names must not matter
    assert cluster_accuracy(clusters, labels) == pytest.approx(
        brute_force_accuracy(clusters, labels, 5)
    )


def test_a_renamed_partition_scores_one_and_matched_clusters_undo_the_renaming():
    labels = np.repeat(np.arange(4), 25)
    clusters = np.array([2, 0, 3, 1])[labels]
    assert clustering_scores(clusters, labels) == {
        "accuracy": 1.0,
        "adjusted_rand_index": 1.0,
        "normalized_mutual_info": pytest.approx(1.0),
    }
    assert np.array_equal(matched_clusters(clusters, labels), labels)
    assert hungarian_match(torch.as_tensor(clusters), labels) == {2: 0, 0: 1, 3: 2, 1: 3}


def test_more_clusters_than_labels_count_the_unmatched_ones_as_errors():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([0, 0, 2, 2, 1, 1, 1, 1])  # label 0 split over clusters 0 and 2
    assert cluster_accuracy(clusters, labels) == 0.75
    assert count_matrix(clusters, labels).tolist() == [[2, 0], [0, 4], [2, 0]]
    renamed = matched_clusters(clusters, labels)
    assert renamed.tolist() == [0, 0, 2, 2, 1, 1, 1, 1]  # cluster 2, unmatched, becomes 2


def test_scores_agree_with_scikit_learn_on_a_noisy_partition():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    clusters = np.where(rng.random(500) < 0.3, rng.integers(0, 3, 500), labels)
    scores = clustering_scores(clusters, labels)
    assert scores["adjusted_rand_index"] == adjusted_rand_score(labels, clusters)
    assert scores["normalized_mutual_info"] == normalized_mutual_info_score(labels, clusters)
    assert 0.5 < scores["accuracy"] < 1


@pytest.mark.parametrize(
    ("clusters", "labels", "message"),
    [
        (np.array([0.5, 1.0]), np.array([0, 1]), "integer indices"),
        (np.array([0, -1]), np.array([0, 1]), ">= 0"),
        (np.array([0, 1, 1]), np.array([0, 1]), "3 clusters for 2 labels"),
    ],
)
def test_bad_inputs_are_refused(clusters, labels, message):
    with pytest.raises(ValueError, match=message):
        clustering_scores(clusters, labels)
