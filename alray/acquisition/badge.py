"""BADGE: k-means++ seeding on last-layer gradient embeddings, never materialised.

The gradient of the cross-entropy loss with respect to the last linear layer,
taken at the hallucinated label ``ŷ = argmax p̄``, is the outer product
``g_i = a_i ⊗ h_i`` with ``a_i = p̄_i - onehot(ŷ_i)`` (``[C]``) and ``h_i`` the
penultimate features (``[D]``). Because ``<a ⊗ h, a' ⊗ h'> = <a, a'><h, h'>``,

    ||g_i - g_j||² = ||a_i||²||h_i||² + ||a_j||²||h_j||² - 2 <a_i, a_j><h_i, h_j>,

so distances are products of ``[N, C]`` and ``[N, D]`` matrix products with the
centers' factors; :mod:`alray.acquisition._greedy` batches them and samples
exactly in between. Memory stays ``O(N (C + D))``: the ``N x C x D`` gradient
array is never built.

References:
    1. Ash, Zhang, Krishnamurthy, Langford, Agarwal. "Deep Batch Active
       Learning by Diverse, Uncertain Gradient Lower Bounds". ICLR 2020.
    2. Arthur, Vassilvitskii. "k-means++: The Advantages of Careful Seeding".
       SODA 2007.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alray.acquisition._greedy import MinDistance
from alray.acquisition._validation import rows_per_chunk
from alray.acquisition.base import Pool, Selector, strategy_registry

__all__ = ["BadgeMetric", "BadgeSelector", "gradient_factors"]


def gradient_factors(probs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``a = p̄ - onehot(argmax p̄)`` per row, chunked over rows.

    Args:
        probs: ``[N, T, C]`` MC probabilities (CPU).
        device: Where the result lives.

    Returns:
        ``float32[N, C]``.
    """
    n, t, c = probs.shape
    out = torch.empty((n, c), dtype=torch.float32, device=device)
    step = rows_per_chunk(t * c)
    for s in range(0, n, step):
        pm = probs[s : s + step].to(device, torch.float32).mean(dim=1)  # [n, C]
        a = pm.clone()
        a.scatter_add_(1, pm.argmax(dim=1, keepdim=True), torch.full_like(pm[:, :1], -1.0))
        out[s : s + step] = a
    return out


class BadgeMetric:
    """Squared distances between gradient embeddings ``a_i ⊗ h_i`` in factorised form.

    Args:
        a: ``float32[N, C]`` loss-gradient factors ``p̄ - onehot(ŷ)``.
        h: ``float32[N, D]`` penultimate features.
    """

    def __init__(self, a: torch.Tensor, h: torch.Tensor) -> None:
        self.a, self.h = a, h
        self.n, self.d = h.shape
        step = rows_per_chunk(self.d)
        sqh = (
            torch.cat([(h[s : s + step] ** 2).sum(dim=1) for s in range(0, self.n, step)])
            if self.n
            else torch.zeros(0, device=h.device)
        )
        self.sq_norm = (a**2).sum(dim=1) * sqh  # ||g_i||^2, [N]
        eps = torch.finfo(torch.float32).eps
        scale = float(self.sq_norm.max()) if self.n else 0.0
        self.atol = 16.0 * math.sqrt(self.d + a.shape[1]) * eps * max(scale, 1e-30)
        self.row_elements = self.d + a.shape[1]

    def features(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Center factors: ``(a [M, C], h [M, D], ||g||^2 [M])``."""
        return self.a[rows], self.h[rows], self.sq_norm[rows]

    def dist(self, rows: slice | torch.Tensor, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Squared gradient distances ``float32[R, M]`` from ``rows`` to the centers.

        Args:
            rows: A slice (contiguous, no copy) or ``int64`` row indices.
            feats: Output of :meth:`features` for ``M`` centers.
        """
        ca, ch, csq = feats
        ad = self.a[rows] @ ca.T  # [R, M]
        hd = self.h[rows] @ ch.T  # [R, M]
        out = self.sq_norm[rows][:, None] + csq[None, :]
        return out.addcmul_(ad, hd, value=-2.0).clamp_min_(0.0)

    def dist_min(self, rows: slice | torch.Tensor, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``min`` over the centers of :meth:`dist`, ``float32[R]``, with fewer passes."""
        ca, ch, csq = feats
        part = (self.h[rows] @ ch.T).mul_(self.a[rows] @ ca.T).mul_(-2.0).add_(csq)  # [R, M]
        return part.amin(dim=1).add_(self.sq_norm[rows]).clamp_min_(0.0)


@strategy_registry.register("badge")
class BadgeSelector(Selector):
    """k-means++ seeding on gradient embeddings (BADGE).

    The first center is the available row with the largest gradient norm (ties:
    lower row); each next center is drawn with probability proportional to its
    squared distance to the nearest center, using ``seed``. Labeled rows and
    rows blocked by the video constraint are never drawn.
    """

    requires = frozenset({"probs", "embeddings"})

    def select(self, pool: Pool) -> np.ndarray:
        h = pool.embeddings
        dev = h.device
        metric = BadgeMetric(gradient_factors(pool.probs, dev), h)
        state = MinDistance(metric, dev, batch=128)
        state.exclude(np.flatnonzero(pool.labeled))
        rng = pool.rng(3)
        target = min(pool.k, pool.n_available)
        picks: list[int] = []
        while len(picks) < target:
            if not state.centers:
                g2 = torch.where(state.d2 > -math.inf, metric.sq_norm, -1.0)
                c = int(g2.argmax())
            else:
                c = state.draw(rng)
                if c < 0:
                    break  # everything left is blocked by the video constraint
            picks.append(c)
            gone = pool.constraint.pick(c) if pool.constraint is not None else np.array([c])
            state.exclude(gone)
            if len(picks) < target:
                state.add(c)
        return np.asarray(picks, dtype=np.int64)
