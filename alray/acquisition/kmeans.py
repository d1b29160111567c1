"""Chunked k-means in torch: k-means++ seeding, Lloyd steps on a sample, full assignment.

Used by the clustering selectors. Memory is ``O(N + K·D)`` beyond the input:
distances are computed in row chunks against the ``K`` centroids.

References:
    1. Arthur, Vassilvitskii. "k-means++: The Advantages of Careful Seeding". SODA 2007.
    2. Lloyd. "Least squares quantization in PCM". IEEE Trans. Inf. Theory, 1982.
"""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition._greedy import EuclideanMetric, MinDistance
from alray.acquisition._validation import check_int, rows_per_chunk

__all__ = ["assign", "kmeans", "kmeans_pp"]


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row, chunked.

    Args:
        x: ``float32[N, D]``.
        centroids: ``float32[K, D]``.

    Returns:
        ``(labels int64[N], squared distances float32[N])``.
    """
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=torch.float32, device=x.device)
    csq = (centroids**2).sum(dim=1)
    step = rows_per_chunk(max(centroids.shape[0], x.shape[1]))
    for s in range(0, n, step):
        xc = x[s : s + step]
        d2 = (xc**2).sum(dim=1, keepdim=True) + csq[None, :] - 2.0 * (xc @ centroids.T)
        val, idx = d2.min(dim=1)
        labels[s : s + step], dist[s : s + step] = idx, val.clamp_min(0.0)
    return labels, dist


def kmeans_pp(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding (D² sampling), distances updated incrementally.

    Args:
        x: ``float32[N, D]``.
        k: Number of centers, ``<= N``.
        rng: Random generator.

    Returns:
        ``int64[k]`` rows chosen as initial centers.
    """
    state = MinDistance(EuclideanMetric(x), x.device)
    picks = [int(rng.integers(x.shape[0]))]
    while True:
        state.exclude(np.array(picks[-1:]))
        if len(picks) == k:
            break
        state.add(picks[-1])
        c = state.draw(rng)
        if c < 0:
            break
        picks.append(c)
    return torch.tensor(picks, dtype=torch.int64, device=x.device)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    rng: np.random.Generator,
    iters: int = 15,
    fit_sample: int = 100_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``x`` into ``k`` groups.

    Centroids are fitted on a random sample of at most ``fit_sample`` rows
    (k-means++ seeding, then Lloyd steps); every row is then assigned.

    Args:
        x: ``float32[N, D]`` (CPU or GPU).
        k: Number of clusters, ``1 <= k``; capped at ``N``.
        rng: Random generator (the only randomness).
        iters: Lloyd iterations.
        fit_sample: Rows used to fit the centroids.

    Returns:
        ``(centroids float32[k, D], labels int64[N])``.

    Raises:
        ValueError: On ``k < 1`` or an empty ``x``.
    """
    k = check_int(k, "n_clusters", min_value=1)
    iters = check_int(iters, "iters", min_value=0)
    n = x.shape[0]
    if n == 0:
        raise ValueError("embeddings: cannot cluster an empty pool")
    k = min(k, n)
    if n > fit_sample:
        sub = torch.from_numpy(np.sort(rng.choice(n, size=fit_sample, replace=False))).to(x.device)
        xs = x[sub]
    else:
        xs = x
    cent = xs[kmeans_pp(xs, k, rng)].clone()
    for _ in range(iters):
        labels, dist = assign(xs, cent)
        sums = torch.zeros_like(cent).index_add_(0, labels, xs)
        counts = torch.bincount(labels, minlength=k).to(cent.dtype)
        empty = counts == 0
        new = sums / counts.clamp_min(1.0)[:, None]
        if bool(empty.any()):  # re-seed empty clusters at the worst-fitted rows
            far = torch.topk(dist, int(empty.sum())).indices
            new[empty] = xs[far]
        shift = float(((new - cent) ** 2).sum())
        cent = new
        if shift <= 1e-10 * float((cent**2).sum()):
            break
    labels, _ = assign(x, cent)
    return cent, labels
