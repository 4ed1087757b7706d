"""k-means: Lloyd's algorithm (:func:`kmeans`) from k-means++ seeds, streamed in chunks.

k-means++ seeding (:func:`kmeans_plusplus`) picks K rows of the data as well-spread
initial centres.

The first centre is a uniformly drawn row; each next one is drawn with probability
proportional to D(x)^2, the squared distance from x to its closest centre so far. The
expected k-means cost of those seeds is within 8 (ln K + 2) of the optimum (Arthur &
Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007). Like
scikit-learn, each step draws 2 + floor(ln K) candidates and keeps the one that lowers the
cost sum_n D(x_n)^2 most (the greedy variant the paper mentions in its conclusion).

The rows never need to be on the compute device at once: distances are computed chunk by
chunk, and what is kept is O(trials N): the closest squared distance of every row, that
distance were each candidate added, and the rows' squared norms (8 bytes each in float64:
about 0.5 GB for N = 10,000,000 with K <= 20).

This module imports nothing from pyrovae: the Gaussian mixture (:mod:`pyrovae.models`) seeds
EM with it, and any other layer may use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Elements (rows x centres x dim) of one chunk's difference array.
CHUNK_ELEMENTS = 1 << 23


def chunk_rows(num_centres: int, dim: int, chunk_size: int | None = None) -> int:
    """Rows per chunk: ``chunk_size``, or as many as keep a (centres, rows, dim) array at
    :data:`CHUNK_ELEMENTS` elements."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, CHUNK_ELEMENTS // max(1, num_centres * dim))


def squared_distances(
    x: torch.Tensor,
    centres: torch.Tensor,
    chunk_size: int | None = None,
    *,
    origin: torch.Tensor | None = None,
    norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """|x_n - c_j|^2 for rows x (N, D) and centres (J, D) on the centres' device: (J, N).

    Expanded as |v|^2 - 2 v . m + |m|^2 with v = x - o and m = c - o about a point o (default:
    the centres' mean), in float64: one (J, D) x (D, B) product per chunk instead of a
    (J, B, D) difference array (as scikit-learn does). About o the cancellation costs about
    1e-16 |v|^2, so data far from the origin keep their distances; values below zero by
    rounding are clamped to 0. The cross term is taken as m . x - m . o, straight from the
    rows (no centred copy of each chunk): its rounding, about 1e-16 |m| |x|, is that of
    forming v = x - o in the first place. ``norms`` (N,), the |x_n - o|^2 of an earlier pass,
    saves recomputing them. x may live elsewhere (e.g. on the CPU); it is moved a chunk at a
    time.
    """
    origin = (centres.mean(0) if origin is None else origin).double()
    m = centres.double() - origin
    # |m|^2 + 2 m . o, so that distances = |v|^2 + shift - 2 m . x: (J, 1)
    shift = (m.square().sum(-1) + 2 * (m @ origin)).unsqueeze(-1)
    rows = chunk_rows(centres.shape[0], centres.shape[1], chunk_size)
    out = []
    for start in range(0, x.shape[0], rows):
        chunk = x[start : start + rows].to(centres.device, torch.float64, non_blocking=True)
        if norms is None:
            v_norms = torch.linalg.vector_norm(chunk - origin, dim=-1).square_()
        else:
            v_norms = norms[start : start + rows]
        distances = torch.addmm(shift, m, chunk.T, alpha=-2).add_(v_norms)
        out.append(distances.clamp_min_(0).to(centres.dtype))
    return torch.cat(out, -1)


def _squared_norms(x: torch.Tensor, origin: torch.Tensor, rows: int) -> torch.Tensor:
    """|x_n - o|^2 (N,) in float64 on o's device, a chunk of rows at a time."""
    parts = []
    for start in range(0, x.shape[0], rows):
        chunk = x[start : start + rows].to(origin.device, non_blocking=True)
        parts.append(torch.linalg.vector_norm(chunk.double() - origin, dim=-1).square_())
    return torch.cat(parts)


def kmeans_plusplus(
    x: torch.Tensor,
    num_centres: int,
    *,
    generator: torch.Generator | None = None,
    num_trials: int | None = None,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-means++ seeds among the rows of x (N, D).

    Args:
        x: the data, rows (N, D), finite.
        num_centres: K, at most N.
        generator: the source of randomness, on ``device`` (a fixed seed gives fixed seeds).
        num_trials: candidates per step; 2 + floor(ln K) by default, 1 for the plain
            algorithm of Arthur & Vassilvitskii.
        chunk_size: rows per chunk of the distance computations (``None``: automatic).
        device, dtype: where and in what precision to compute (x's by default).

    Returns:
        centres (K, D) on ``device`` and their row indices (K,) in x. When x has fewer than
        K distinct rows every remaining D(x)^2 is zero, and further seeds are drawn uniformly
        (they repeat rows already chosen).
    """
    n, d = x.shape
    if not 1 <= num_centres <= n:
        raise ValueError(f"k-means++ needs 1 <= K <= N; got K = {num_centres}, N = {n}")
    device = torch.device(device) if device is not None else x.device
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(torch.randint(2**62, ())))
    trials = num_trials or 2 + int(math.log(num_centres))
    rows = chunk_rows(trials, d, chunk_size)
    # One reference point and |x_n - o|^2 for all passes: each pass is then one product.
    origin = x[:rows].to(device).double().mean(0)
    norms = _squared_norms(x, origin, rows)
    indices = torch.empty(num_centres, dtype=torch.long, device=device)
    indices[0] = torch.randint(n, (), generator=generator, device=device)
    centres = x[indices[:1].to(x.device)].to(device, dtype)
    closest = squared_distances(x, centres, rows, origin=origin, norms=norms)[0]  # D(x)^2: (N,)
    for c in range(1, num_centres):
        cumulative = closest.double().cumsum(0)
        potential = cumulative[-1]
        if potential > 0:
            draws = torch.rand(trials, generator=generator, device=device, dtype=torch.float64)
            candidates = torch.searchsorted(cumulative, draws * potential, right=True)
            candidates = candidates.clamp_max(n - 1)
        else:  # every row coincides with a centre: no distance left to sample by
            candidates = torch.randint(n, (trials,), generator=generator, device=device)
        points = x[candidates.to(x.device)].to(device, dtype)  # (trials, D)
        # D(x)^2 if each candidate were added (trials, N): one pass; the best one is kept.
        distances = squared_distances(x, points, rows, origin=origin, norms=norms)
        updated = torch.minimum(closest, distances)
        best = updated.sum(-1).argmin()
        closest = updated[best]
        indices[c] = candidates[best]
        centres = torch.cat([centres, points[best].unsqueeze(0)])
    return centres, indices


@dataclass
class KMeansResult:
    """A k-means fit: ``centres`` (K, D), ``labels`` (N,) the index of each row's nearest
    centre, ``inertia`` sum_n min_k |x_n - c_k|^2, the Lloyd ``iterations`` of the kept
    start and whether it ``converged`` (no label changed; centres moved at most ``tol``)."""

    centres: torch.Tensor
    labels: torch.Tensor
    inertia: float
    iterations: int
    converged: bool


def kmeans(
    x: torch.Tensor,
    num_clusters: int,
    *,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> KMeansResult:
    """Lloyd's algorithm from greedy k-means++ seeds: the K centres minimising, locally,
    J = sum_n min_k |x_n - c_k|^2 over rows x (N, D) (EM's hard-assignment limit with
    every covariance eps I, eps -> 0; Bishop, PRML section 9.3.2).

    Each iteration assigns every row to its nearest centre and moves every centre to the
    mean of its rows; J never increases. A centre left with no rows is moved to the row
    farthest from its own centre (as scikit-learn does), so K clusters stay K. It stops
    when no assignment changes, or when the centres move by at most ``tol`` times the mean
    per-feature variance of x in squared distance (scikit-learn's criterion), or after
    ``max_iter`` iterations.

    Args:
        x: rows (N, D), finite, N >= K.
        num_clusters: K.
        n_init: starts from independent k-means++ seeds; the one with the lowest J is kept.
        max_iter, tol: as above.
        init: initial centres (K, D) instead of k-means++ (then ``n_init`` must be 1).
        generator: the randomness of the seeds, on ``device``.
        chunk_size: rows per chunk of the distance computations (``None``: automatic).
        device, dtype: where and in what precision to compute (x's by default).
    """
    n, d = x.shape
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-means needs 1 <= K <= N; got K = {num_clusters}, N = {n}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be at least 1, got {n_init} and {max_iter}")
    if init is not None and (init.shape != (num_clusters, d) or n_init != 1):
        raise ValueError(
            f"init must be (K, D) = ({num_clusters}, {d}) centres, with n_init = 1; got shape "
            f"{tuple(init.shape)} and n_init = {n_init}"
        )
    device = torch.device(device) if device is not None else x.device
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    data = x.to(device, dtype)
    threshold = tol * float(data.double().var(0, unbiased=False).mean())
    best: KMeansResult | None = None
    for _ in range(n_init):
        if init is not None:
            centres = init.to(device, dtype)
        else:
            centres, _ = kmeans_plusplus(
                data, num_clusters, generator=generator, chunk_size=chunk_size
            )
        result = _lloyd(data, centres, max_iter, threshold, chunk_size)
        if best is None or result.inertia < best.inertia:
            best = result
    return best


def _lloyd(
    x: torch.Tensor, centres: torch.Tensor, max_iter: int, threshold: float, chunk_size: int | None
) -> KMeansResult:
    """Lloyd iterations from ``centres`` (K, D) on rows x (N, D); see :func:`kmeans`."""
    k = centres.shape[0]
    labels = None
    iterations, converged = 0, False
    while iterations < max_iter and not converged:
        iterations += 1
        closest, new_labels = squared_distances(x, centres, chunk_size).min(0)  # (N,), (N,)
        if labels is not None and torch.equal(new_labels, labels):
            converged = True  # the centres are already the means of these assignments
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        moved = sums / counts.clamp_min(1).unsqueeze(-1).to(x.dtype)
        for j in torch.nonzero(counts == 0).flatten().tolist():
            far = int(closest.argmax())  # the worst-served row becomes the empty centre
            moved[j] = x[far]
            closest[far] = 0
        converged = float((moved - centres).double().square().sum()) <= threshold
        centres = moved
    closest, labels = squared_distances(x, centres, chunk_size).min(0)
    return KMeansResult(centres, labels, float(closest.double().sum()), iterations, converged)
