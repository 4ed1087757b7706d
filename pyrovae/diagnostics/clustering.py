"""Clusters scored against labels: Hungarian-matched accuracy, adjusted Rand index, NMI.

- Clustering accuracy (Yang et al. 2010; used by DEC, VaDE, GMVAE):
  max over one-to-one maps m from clusters to labels of (1/N) sum_n [m(c_n) = y_n], the map
  found by the Hungarian algorithm (Kuhn 1955) on the (clusters x labels) count matrix. With
  more clusters than labels, the unmatched clusters count as errors.
- Adjusted Rand index (Hubert & Arabie 1985): pair agreement corrected for chance; 1 for the
  same partition, about 0 for chance.
- Normalised mutual information: I(c; y) / mean(H(c), H(y)) (arithmetic mean, scikit-learn's
  default); 1 for the same partition, 0 for independent ones.

None of these uses the labels' names, only the partition; none is used in training.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"expected a vector of integer indices, got {values.dtype} {values.shape}")
    if values.size and values.min() < 0:
        raise ValueError("cluster and label indices must be >= 0")
    return values


def count_matrix(
    clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Counts (K, C): row = cluster, column = label; K and C from the largest index + 1."""
    c, y = _numpy(clusters), _numpy(labels)
    if len(c) != len(y):
        raise ValueError(f"{len(c)} clusters for {len(y)} labels")
    counts = np.zeros((int(c.max(initial=0)) + 1, int(y.max(initial=0)) + 1), dtype=np.int64)
    np.add.at(counts, (c, y), 1)
    return counts


def hungarian_match(
    clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> dict[int, int]:
    """The one-to-one map {cluster: label} with the most examples on the diagonal."""
    from scipy.optimize import linear_sum_assignment

    counts = count_matrix(clusters, labels)
    rows, cols = linear_sum_assignment(-counts)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def cluster_accuracy(
    clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> float:
    """The share of examples whose cluster maps to their label under :func:`hungarian_match`."""
    counts = count_matrix(clusters, labels)
    mapping = hungarian_match(clusters, labels)
    return float(sum(counts[r, c] for r, c in mapping.items()) / max(counts.sum(), 1))


def matched_clusters(
    clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Each example's cluster renamed by its matched label (N,); a cluster left unmatched
    (more clusters than labels) becomes C, C + 1, ... in order."""
    c = _numpy(clusters)
    mapping = hungarian_match(c, labels)
    extra = max(mapping.values(), default=-1) + 1
    for k in sorted(set(np.unique(c).tolist()) - set(mapping)):
        mapping[k], extra = extra, extra + 1
    return np.array([mapping[int(k)] for k in c], dtype=np.int64)


def clustering_scores(
    clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> dict[str, float]:
    """``{"accuracy", "adjusted_rand_index", "normalized_mutual_info"}`` of clusters (N,)
    against labels (N,)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    c, y = _numpy(clusters), _numpy(labels)
    return {
        "accuracy": cluster_accuracy(c, y),
        "adjusted_rand_index": float(adjusted_rand_score(y, c)),
        "normalized_mutual_info": float(normalized_mutual_info_score(y, c)),
    }
