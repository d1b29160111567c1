"""Greedy k-center (core-set) selection.

Each pick is the available row farthest from its nearest center, where the
centers are the labeled rows plus the rows picked so far (Sener & Savarese
2018, greedy 2-approximation). Distances are kept in ``O(N)`` memory by
:class:`~alray.acquisition._greedy.MinDistance`: all rows are refreshed in
chunked matrix products every few dozen picks, and in between the farthest row
is found exactly by lazy evaluation. Near-ties of the float32 values are
re-decided in float64 against every center, so the picks equal those of the
exact algorithm (ties: lower row).

References:
    1. Sener, Savarese. "Active Learning for Convolutional Neural Networks: A
       Core-Set Approach". ICLR 2018.
    2. Gonzalez. "Clustering to minimize the maximum intercluster distance".
       Theoretical Computer Science 38, 1985.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alray.acquisition._greedy import EuclideanMetric, MinDistance
from alray.acquisition._validation import rows_per_chunk
from alray.acquisition.base import Pool, Selector, strategy_registry

__all__ = ["KCenterSelector", "exact_min_sq_distance"]

# At most this many near-tied rows are re-decided exactly per pick.
MAX_REFINE = 256


def exact_min_sq_distance(
    x: torch.Tensor, rows: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """Float64 squared distance from each of ``rows`` to its nearest center.

    Computed from differences (no cancellation), chunked over centers.

    Args:
        x: ``[N, D]`` embeddings.
        rows: ``int64[M]`` query rows (small).
        centers: ``int64[L]`` center rows.

    Returns:
        ``float64[M]``.
    """
    q = x[rows].double()  # [M, D]
    best = torch.full((rows.numel(),), math.inf, dtype=torch.float64, device=x.device)
    step = max(1, rows_per_chunk(max(1, rows.numel()) * x.shape[1], budget=1 << 20))
    for s in range(0, centers.numel(), step):
        c = x[centers[s : s + step]].double()  # [l, D]
        d2 = ((q[:, None, :] - c[None, :, :]) ** 2).sum(dim=2)  # [M, l]
        best = torch.minimum(best, d2.min(dim=1).values)
    return best


@strategy_registry.register("kcenter")
class KCenterSelector(Selector):
    """Greedy k-center over ``embeddings [N, D]``, seeded by the labeled rows.

    Without labeled rows the first center is a uniformly random available row
    (from ``seed``), as in the reference implementation. With the video
    constraint, rows conflicting with a pick are dropped from the candidates
    inside the greedy loop.

    Args:
        half: Run the distance pass in half precision (``float16`` on GPU,
            ``bfloat16`` on CPU; one extra ``N x D`` half copy). Near-ties are
            still re-decided in float64, but rows whose half-precision error
            exceeds the tie window may be ordered differently from float32.
        exact: Re-decide near-ties in float64 (default). ``False`` trusts the
            float32 argmax.
    """

    requires = frozenset({"embeddings"})

    def __init__(self, half: bool = False, exact: bool = True) -> None:
        self.half = bool(half)
        self.exact = bool(exact)

    def select(self, pool: Pool) -> np.ndarray:
        x = pool.embeddings
        state = MinDistance(EuclideanMetric(x, half=self.half), x.device, batch=16)
        labeled = np.flatnonzero(pool.labeled)
        state.exclude(labeled)
        state.seed(labeled)
        target = min(pool.k, pool.n_available)
        picks: list[int] = []
        while len(picks) < target:
            if not state.centers:
                c = int(pool.rng(2).choice(np.flatnonzero(pool.available)))
            else:
                top, c = state.top()
                if c < 0:
                    break  # everything left is blocked by the video constraint
                if self.exact:
                    c = self._refine(state, top, x)
            picks.append(c)
            gone = pool.constraint.pick(c) if pool.constraint is not None else np.array([c])
            state.exclude(gone)
            if len(picks) < target:
                state.add(c)
        return np.asarray(picks, dtype=np.int64)

    @staticmethod
    def _refine(state: MinDistance, top: float, x: torch.Tensor) -> int:
        """Farthest row, with near-ties (within the float32 error) decided in float64."""
        near = state.near(top - 4.0 * state.atol, MAX_REFINE)
        if near.size == 1:
            return int(near[0])
        rows = torch.as_tensor(near, device=x.device)
        centers = torch.as_tensor(state.centers, device=x.device)
        exact = exact_min_sq_distance(x, rows, centers).cpu().numpy()
        return int(near[exact == exact.max()].min())
