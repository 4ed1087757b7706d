"""Clustering scores against brute force and against values by hand, and their refusals."""

from __future__ import annotations

import itertools
import math

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


def test_scores_of_small_contingency_tables_match_their_values_by_hand():
    """ARI = (sum_ij C(n_ij, 2) - E) / ((A + B) / 2 - E) with A = sum_i C(a_i, 2),
    B = sum_j C(b_j, 2), E = A B / C(N, 2); NMI = I(c; y) / ((H(c) + H(y)) / 2) in nats."""
    # Table (cluster x label) [[2, 0], [1, 3]]: sum C(n_ij, 2) = 4, A = 1 + 6, B = 3 + 3,
    # E = 42 / 15; ARI = (4 - 2.8) / (6.5 - 2.8) = 12 / 37. I = 1/3 log 2 + 1/6 log(1/2)
    # + 1/2 log(3/2); H(c) = 1/3 log 3 + 2/3 log(3/2), H(y) = log 2.
    labels = np.array([0, 0, 0, 1, 1, 1])
    clusters = np.array([0, 0, 1, 1, 1, 1])
    assert count_matrix(clusters, labels).tolist() == [[2, 0], [1, 3]]
    mutual = math.log(2) / 6 + math.log(1.5) / 2
    entropies = math.log(3) / 3 + 2 * math.log(1.5) / 3 + math.log(2)
    assert clustering_scores(clusters, labels) == {
        "accuracy": pytest.approx(5 / 6, abs=1e-12),
        "adjusted_rand_index": pytest.approx(12 / 37, abs=1e-12),
        "normalized_mutual_info": pytest.approx(2 * mutual / entropies, abs=1e-12),
    }
    # Table [[2, 0], [0, 4], [2, 0]]: pure clusters, one label split in two. sum C(n_ij, 2)
    # = 8, A = 8, B = 12, E = 96 / 28; ARI = 16 / 23. I = H(y) = log 2 and
    # H(c) = 3/2 log 2, so NMI = log 2 / (5/4 log 2) = 4 / 5.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([0, 0, 2, 2, 1, 1, 1, 1])
    assert clustering_scores(torch.as_tensor(clusters), labels) == {
        "accuracy": pytest.approx(0.75, abs=1e-12),
        "adjusted_rand_index": pytest.approx(16 / 23, abs=1e-12),
        "normalized_mutual_info": pytest.approx(0.8, abs=1e-12),
    }


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


def test_no_examples_score_zero_and_rename_to_no_examples():
    """An empty split (say a class filtered away) is scored, not crashed on: accuracy 0, a
    1 x 1 table of zeros, and an empty integer vector of renamed clusters."""
    empty = np.array([], dtype=np.int64)
    assert count_matrix(empty, empty).tolist() == [[0]]
    assert cluster_accuracy(empty, empty) == 0.0
    renamed = matched_clusters(empty, empty)
    assert renamed.shape == (0,) and renamed.dtype == np.int64
