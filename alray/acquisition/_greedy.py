"""Incremental nearest-center distances shared by k-center and BADGE.

:class:`MinDistance` keeps, for every pool row, the squared distance to its
nearest chosen center and which center that is. Adding a center costs one
chunked pass over the rows that *can* get closer, found with two exact bounds
(Elkan 2003; Raff 2021): a row ``i`` assigned to center ``a`` cannot get closer
to a new center ``c`` when ``d(a, c) >= 2 d(i, a)`` (triangle inequality) or when
``| ||x_i|| - ||x_c|| | >= d(i, a)``. Both tests are ``O(N)`` scalar work; the
``O(N·D)`` distance pass only touches the surviving rows. Memory is ``O(N)`` on
top of the inputs; nothing ``N x N`` or ``N x C x D`` is ever built.

References:
    1. Elkan. "Using the Triangle Inequality to Accelerate k-Means". ICML 2003.
    2. Raff. "Exact Acceleration of K-Means++ and K-Means||". IJCAI 2021.
"""

from __future__ import annotations

import math

import torch

from alray.acquisition._validation import rows_per_chunk

# Above this share of surviving rows a full contiguous pass beats gathering.
GATHER_MAX_SHARE = 0.15


class EuclideanMetric:
    """Squared Euclidean distance on embeddings ``[N, D]``.

    Args:
        x: ``float32[N, D]`` embeddings (CPU or GPU).
        half: Run the dot products in half precision (``float16`` on GPU,
            ``bfloat16`` on CPU), using an extra ``N x D`` half copy.
    """

    def __init__(self, x: torch.Tensor, half: bool = False) -> None:
        self.x = x
        self.n, self.d = x.shape
        step = rows_per_chunk(self.d)
        self.sq = torch.cat([(x[s : s + step] ** 2).sum(dim=1) for s in range(0, self.n, step)])
        self.work = x
        eps = torch.finfo(torch.float32).eps
        if half:
            dtype = torch.float16 if x.is_cuda else torch.bfloat16
            self.work = x.to(dtype)
            eps = torch.finfo(dtype).eps
        self.sq_norm = self.sq  # ||x_i||^2, for the norm bound
        scale = float(self.sq.max()) if self.n else 0.0
        # absolute error bound on one computed squared distance
        self.atol = 16.0 * math.sqrt(self.d) * eps * max(scale, 1e-30)

    def center_vector(self, c: int) -> torch.Tensor:
        """Row ``c`` in the working dtype, ``[D]``."""
        return self.work[c]

    def to_center(self, c: int, rows: torch.Tensor | None) -> torch.Tensor:
        """Squared distances from ``rows`` (``None``: all) to row ``c``, ``float32[M]``.

        Args:
            c: Center row.
            rows: ``int64[M]`` rows or ``None``.

        Returns:
            ``float32[M]`` squared distances (clamped at 0).
        """
        v = self.center_vector(c)
        if rows is None:
            dots = (self.work @ v).float()
            sq = self.sq
        else:
            step = rows_per_chunk(self.d)
            parts = [
                (self.work.index_select(0, rows[s : s + step]) @ v).float()
                for s in range(0, rows.numel(), step)
            ]
            dots = torch.cat(parts) if parts else torch.empty(0, device=self.x.device)
            sq = self.sq[rows]
        return (sq + self.sq[c] - 2.0 * dots).clamp_min_(0.0)

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Squared distances ``[len(rows), len(cols)]`` (small blocks only)."""
        dots = (self.work[rows] @ self.work[cols].T).float()
        return (self.sq[rows, None] + self.sq[None, cols] - 2.0 * dots).clamp_min_(0.0)

    def features(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What :meth:`cross` needs about ``rows``: ``(x [M, D], ||x||^2 [M])``."""
        return self.work[rows], self.sq[rows]

    def cross(self, feats: tuple[torch.Tensor, ...], c: int) -> torch.Tensor:
        """Squared distances from cached center features to row ``c``, ``[M]``."""
        x, sq = feats
        return (sq + self.sq[c] - 2.0 * (x @ self.work[c]).float()).clamp_min_(0.0)


class MinDistance:
    """Nearest-center squared distances under a metric, updated one center at a time.

    Rows whose distance is set to ``-inf`` (excluded rows) are never updated.

    Args:
        metric: An object with ``n``, ``sq_norm``, ``atol``, ``to_center`` and ``block``.
        device: Device of the state tensors.
    """

    def __init__(self, metric, device: torch.device) -> None:
        self.metric = metric
        n = metric.n
        self.d2 = torch.full((n,), math.inf, dtype=torch.float32, device=device)
        self.assign = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.norm = metric.sq_norm.sqrt()
        self.centers: list[int] = []
        self._cache: list[torch.Tensor] | None = None  # center features, capacity-doubled
        self.atol = metric.atol
        self.evaluated = 0  # rows whose distance was computed (for diagnostics)

    def seed(self, centers: torch.Tensor) -> None:
        """Initialise with many centers at once (e.g. the labeled set), chunked.

        Args:
            centers: ``int64[L]`` center rows.
        """
        n = self.metric.n
        if centers.numel() == 0:
            return
        base = len(self.centers)
        row_step = max(1, min(n, 4096))
        col_step = max(1, rows_per_chunk(row_step))
        for s in range(0, n, row_step):
            rows = torch.arange(s, min(n, s + row_step), device=self.d2.device)
            best = torch.full((rows.numel(),), math.inf, device=self.d2.device)
            arg = torch.zeros(rows.numel(), dtype=torch.int64, device=self.d2.device)
            for cs in range(0, centers.numel(), col_step):
                cols = centers[cs : cs + col_step]
                val, idx = self.metric.block(rows, cols).min(dim=1)
                better = val < best
                best = torch.where(better, val, best)
                arg = torch.where(better, idx + (cs + base), arg)
            keep = self.d2[rows] > best  # never touch excluded (-inf) rows
            self.d2[rows] = torch.where(keep, best, self.d2[rows])
            self.assign[rows] = torch.where(keep, arg, self.assign[rows])
        self._remember(centers)
        self.evaluated += n * centers.numel()

    def add(self, c: int) -> None:
        """Add center ``c`` and lower the distances of the rows it is now nearest to.

        Args:
            c: The new center row.
        """
        d2, margin = self.d2, 2.0 * self.atol
        bound = (self.norm - self.norm[c]) ** 2
        if self.centers:
            m = len(self.centers)
            cc2 = self.metric.cross(tuple(f[:m] for f in self._cache), c)
            has = self.assign >= 0
            bound = torch.where(has, torch.maximum(bound, cc2[self.assign.clamp_min(0)] / 4), bound)
        need = (d2 + margin) > bound
        share = float(need.float().mean()) if d2.numel() else 0.0
        if share > GATHER_MAX_SHARE:
            new = self.metric.to_center(c, None)
            better = need & (new < d2)
            self.d2 = torch.where(better, new, d2)
            self.assign = torch.where(better, len(self.centers), self.assign)
            self.evaluated += d2.numel()
        else:
            rows = need.nonzero().squeeze(1)
            new = self.metric.to_center(c, rows)
            better = new < d2[rows]
            upd = rows[better]
            self.d2[upd] = new[better]
            self.assign[upd] = len(self.centers)
            self.evaluated += rows.numel()
        self._remember(torch.as_tensor([c], device=d2.device))

    def _remember(self, rows: torch.Tensor) -> None:
        feats = self.metric.features(rows)
        m, add = len(self.centers), rows.numel()
        if self._cache is None or m + add > self._cache[0].shape[0]:
            cap = max(64, 2 * (m + add))
            new = [f.new_empty((cap, *f.shape[1:])) for f in feats]
            if self._cache is not None:
                for dst, src in zip(new, self._cache, strict=True):
                    dst[:m] = src[:m]
            self._cache = new
        for dst, src in zip(self._cache, feats, strict=True):
            dst[m : m + add] = src
        self.centers.extend(int(r) for r in rows.tolist())

    def exclude(self, rows: torch.Tensor) -> None:
        """Remove rows from candidates and from all later updates.

        Args:
            rows: ``int64`` rows (picked, labeled or blocked by a constraint).
        """
        self.d2[rows] = -math.inf
