"""Nearest-center distances with deferred, batched updates (k-center, BADGE, k-means++).

A greedy picker needs, after every pick, the distance from each pool row to
its nearest chosen center. Updating all ``N`` rows after each pick is one
memory-bound matrix-vector pass per pick. :class:`MinDistance` instead keeps
*stale* distances, which are upper bounds of the true ones (a minimum over a
subset of the centers), and brings all rows up to date only every ``batch``
centers, with one matrix-matrix pass against the pending centers (compute-bound
and far faster per center). Between two refreshes the queries stay exact:

* the farthest row (k-center): take the row with the largest stale distance,
  refresh that one row against the pending centers, and stop once the largest
  stale distance belongs to an up-to-date row (every other true distance is
  below its stale bound) — lazy greedy;
* D² sampling (BADGE, k-means++): draw a row with probability proportional to
  its stale distance and accept it with probability ``true / stale`` (rejection
  sampling with the stale distances as envelope), which yields an exact draw
  proportional to the true distances.

Blocks of ``BLOCK`` rows keep their maximum and weight sum, so a query costs
``O(N / BLOCK + BLOCK)``. Memory is ``O(N)`` on top of the inputs; nothing
``N x N`` or ``N x C x D`` is ever built.

References:
    1. Minoux. "Accelerated greedy algorithms for maximizing submodular set
       functions". 1978 (lazy evaluation).
    2. Arthur, Vassilvitskii. "k-means++: The Advantages of Careful Seeding". SODA 2007.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alray.acquisition._validation import rows_per_chunk

# Rows per block of the block maxima and weight sums.
BLOCK = 1024


class EuclideanMetric:
    """Squared Euclidean distance on embeddings ``[N, D]``.

    Args:
        x: ``float32[N, D]`` embeddings (CPU or GPU).
        half: Run the products in half precision (``float16`` on GPU,
            ``bfloat16`` on CPU), using an extra ``N x D`` half copy.
    """

    def __init__(self, x: torch.Tensor, half: bool = False) -> None:
        self.x = x
        self.n, self.d = x.shape
        step = rows_per_chunk(self.d)
        self.sq_norm = (
            torch.cat([(x[s : s + step] ** 2).sum(dim=1) for s in range(0, self.n, step)])
            if self.n
            else torch.zeros(0, device=x.device)
        )
        self.work = x
        eps = torch.finfo(torch.float32).eps
        if half:
            dtype = torch.float16 if x.is_cuda else torch.bfloat16
            self.work = x.to(dtype)
            eps = torch.finfo(dtype).eps
        scale = float(self.sq_norm.max()) if self.n else 0.0
        # absolute error bound on one computed squared distance
        self.atol = 16.0 * math.sqrt(self.d) * eps * max(scale, 1e-30)
        self.row_elements = self.d

    def features(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What :meth:`dist` needs about centers: ``(x [M, D], ||x||^2 [M])``."""
        return self.work[rows], self.sq_norm[rows]

    def dist(self, rows: slice | torch.Tensor, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Squared distances ``float32[R, M]`` from ``rows`` to centers given by features.

        Args:
            rows: A slice (contiguous, no copy) or ``int64`` row indices.
            feats: Output of :meth:`features` for ``M`` centers.
        """
        cx, csq = feats
        dots = (self.work[rows] @ cx.T).float()
        return (self.sq_norm[rows][:, None] + csq[None, :] - 2.0 * dots).clamp_min_(0.0)

    def dist_min(self, rows: slice | torch.Tensor, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``min`` over the centers of :meth:`dist`, ``float32[R]``, fused into the product."""
        cx, csq = feats
        if self.work.dtype == torch.float32:
            part = torch.addmm(csq[None, :], self.work[rows], cx.T, alpha=-2.0)  # [R, M]
        else:
            part = csq[None, :] - 2.0 * (self.work[rows] @ cx.T).float()
        return part.amin(dim=1).add_(self.sq_norm[rows]).clamp_min_(0.0)


class MinDistance:
    """Nearest-center squared distances, refreshed in batches, queried exactly.

    Excluded rows (picked, labeled, blocked) hold ``-inf`` and are never candidates.

    Args:
        metric: An object with ``n``, ``sq_norm``, ``atol``, ``row_elements``,
            ``features`` and ``dist``.
        device: Device of the state tensors.
        batch: Pending centers that trigger a full refresh.
    """

    def __init__(self, metric, device: torch.device, *, batch: int = 64) -> None:
        self.metric = metric
        self.n = n = metric.n
        self.nb = max(1, -(-n // BLOCK))
        pad = self.nb * BLOCK
        self._d2 = torch.full((pad,), -math.inf, dtype=torch.float32, device=device)
        self._d2[:n] = math.inf
        self.d2 = self._d2[:n]  # stale squared distances (upper bounds), view
        self.upto = torch.zeros(pad, dtype=torch.int64, device=device)  # centers seen per row
        self.synced = 0  # every row has seen centers[:synced]
        self.centers: list[int] = []
        self._cache: list[torch.Tensor] | None = None  # center features, capacity-doubled
        self.atol = metric.atol
        self.batch = batch
        self.refreshes = 0  # full refreshes done (diagnostics)
        self.row_refreshes = 0  # single-row refreshes done (diagnostics)
        self._bmax = torch.full((self.nb,), math.inf, device=device)
        self._bsum = torch.zeros(self.nb, dtype=torch.float64, device=device)
        self._lane = torch.arange(BLOCK, device=device)
        self._rows_since = 0  # rows refreshed one by one since the last full refresh
        self._bound_useful = True  # whether the norm bound skipped rows last time
        self._norm = torch.cat([metric.sq_norm.sqrt(), metric.sq_norm.new_zeros(pad - n)])
        self.evaluated = 0  # row-center blocks computed in full refreshes (diagnostics)

    # ------------------------------------------------------------------ updates
    def seed(self, centers: np.ndarray) -> None:
        """Add many centers at once (e.g. the labeled set) and refresh every row.

        Args:
            centers: ``int64[L]`` center rows.
        """
        if len(centers):
            self._remember(torch.as_tensor(np.asarray(centers, np.int64), device=self.d2.device))
            self.refresh()

    def add(self, c: int) -> None:
        """Add center ``c``; rows are refreshed lazily or at the next full refresh.

        Args:
            c: The new center row.
        """
        self._remember(torch.tensor([c], device=self.d2.device))
        if self.synced == 0 or len(self.centers) - self.synced >= self.batch:
            self.refresh()

    def exclude(self, rows: np.ndarray) -> None:
        """Remove rows from the candidates for good.

        Args:
            rows: ``int64`` rows (picked, labeled or blocked by a constraint).
        """
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.d2.device)
        if idx.numel():
            self._d2[idx] = -math.inf
            self._update_blocks(idx)

    def refresh(self) -> None:
        """Bring every row up to date with all centers (chunked matrix products)."""
        m = len(self.centers)
        if self.synced < m:
            feats = tuple(f[self.synced : m] for f in self._cache)
            # norm bound: ||g_i - g_j|| >= | ||g_i|| - ||g_j|| |, nearest pending norm via search
            pend = torch.sort(self.metric.sq_norm[self.centers_tensor()[self.synced : m]].sqrt())[0]
            skipped = 0.0
            # the bound is tried on every 4th refresh and kept while it skips >= 5% of rows
            self._bound_useful = self._bound_useful or self.refreshes % 4 == 0
            rows_step = rows_per_chunk(max(self.metric.row_elements, m - self.synced))
            col_step = rows_per_chunk(rows_step)
            for s in range(0, self.n, rows_step):
                e = min(self.n, s + rows_step)
                best = self.d2[s:e]
                share = 1.0
                if self._bound_useful:
                    need = best + 2.0 * self.atol > self._norm_gap(self._norm[s:e], pend)
                    share = float(need.float().mean()) if e > s else 0.0
                    skipped += (1.0 - share) * (e - s)
                if share == 0.0:
                    continue
                rows = slice(s, e) if share > 0.5 else need.nonzero().squeeze(1) + s
                cur = self._d2[rows]
                for cs in range(0, m - self.synced, col_step):
                    part = tuple(f[cs : cs + col_step] for f in feats)
                    cur = torch.minimum(cur, self.metric.dist_min(rows, part))
                self._d2[rows] = cur  # -inf (excluded) rows stay -inf
                self.evaluated += (e - s) if isinstance(rows, slice) else rows.numel()
            self.upto.fill_(m)
            self.synced = m
            self.refreshes += 1
            self._bound_useful = skipped >= 0.05 * self.n
        self._rows_since = 0
        blocks = self._d2.view(self.nb, BLOCK)
        self._bmax = blocks.amax(dim=1)
        self._bsum = blocks.clamp_min(0.0).sum(dim=1, dtype=torch.float64)

    def refresh_rows(self, rows: torch.Tensor) -> None:
        """Bring a few rows up to date with the pending centers.

        Args:
            rows: ``int64`` candidate rows (small).
        """
        m = len(self.centers)
        rows = rows[self.upto[rows] < m]
        if rows.numel() == 0:
            return
        lo = int(self.upto[rows].min())
        feats = tuple(f[lo:m] for f in self._cache)
        new = self.metric.dist_min(rows, feats)
        self._d2[rows] = torch.minimum(self._d2[rows], new)
        self.upto[rows] = m
        self.row_refreshes += rows.numel()
        self._rows_since += rows.numel()
        self._update_blocks(rows)
        if self._rows_since > self.n // 4:  # a full refresh is now the cheaper way
            self.refresh()

    # ------------------------------------------------------------------ queries
    def top(self) -> tuple[float, int]:
        """The farthest candidate row and its exact distance (``(-inf, -1)`` if none).

        Ties between equal stale values go to the lower row; callers needing
        exact tie-breaking refine with :meth:`near`.
        """
        m, r = len(self.centers), 1
        while True:
            b = int(torch.argmax(self._bmax))
            if float(self._bmax[b]) == -math.inf:
                return -math.inf, -1
            i = b * BLOCK + int(torch.argmax(self._d2[b * BLOCK : (b + 1) * BLOCK]))
            if int(self.upto[i]) >= m:
                return float(self._d2[i]), i
            # refresh the r largest stale rows (they sit in the r fullest blocks), r doubling
            blocks = torch.topk(self._bmax, min(r, self.nb)).indices
            rows = (blocks[:, None] * BLOCK + self._lane).reshape(-1)
            rows = rows[torch.topk(self._d2[rows], r).indices]
            self.refresh_rows(rows[self._d2[rows] > -math.inf])
            r = min(2 * r, 4096)

    def near(self, threshold: float, cap: int) -> np.ndarray:
        """Candidate rows whose exact distance is ``>= threshold`` (at most ``cap``, farthest first).

        Args:
            threshold: Distance threshold.
            cap: Maximum number of rows.

        Returns:
            ``int64`` rows.
        """
        blocks = (self._bmax >= threshold).nonzero().squeeze(1)
        if blocks.numel() * BLOCK > 16 * BLOCK * 64:
            self.refresh()
            blocks = (self._bmax >= threshold).nonzero().squeeze(1)
        rows = (blocks[:, None] * BLOCK + self._lane).reshape(-1)
        rows = rows[self._d2[rows] >= threshold]
        self.refresh_rows(rows)
        rows = rows[self._d2[rows] >= threshold]
        if rows.numel() > cap:
            rows = rows[torch.topk(self._d2[rows], cap).indices]
        return rows.cpu().numpy()

    def draw(self, rng: np.random.Generator) -> int:
        """Draw a candidate row with probability proportional to its exact distance.

        When every candidate is at distance 0 the draw is uniform over them.

        Args:
            rng: Random generator (one or more ``random()`` calls per draw).

        Returns:
            The row, or -1 when no candidate is left.
        """
        m = len(self.centers)
        for _ in range(64 * self.batch):
            total = float(self._bsum.sum())
            if total <= 0.0:
                break
            row = self._draw_stale(rng.random() * total)
            if row < 0 or int(self.upto[row]) >= m:
                return row
            old = float(self._d2[row])
            self.refresh_rows(torch.tensor([row], device=self.d2.device))
            if rng.random() * old < float(self._d2[row]):
                return row
        else:  # envelope far too loose: tighten it and retry
            self.refresh()
            return self.draw(rng)
        left = (self.d2 > -math.inf).nonzero().squeeze(1)
        return -1 if left.numel() == 0 else int(left[int(rng.random() * left.numel())])

    # ------------------------------------------------------------------ internals
    def centers_tensor(self) -> torch.Tensor:
        """Center rows as an ``int64`` tensor on the state device."""
        return torch.as_tensor(self.centers, device=self.d2.device)

    @staticmethod
    def _norm_gap(norm: torch.Tensor, pend: torch.Tensor) -> torch.Tensor:
        """``min_j (norm_i - pend_j)^2`` with ``pend`` sorted ascending, ``[R]``."""
        pos = torch.searchsorted(pend, norm).clamp(1, max(1, pend.numel() - 1))
        lo = (norm - pend[pos - 1]).abs()
        hi = (norm - pend[pos.clamp_max(pend.numel() - 1)]).abs()
        return torch.minimum(lo, hi) ** 2

    def _draw_stale(self, x: float) -> int:
        cum = torch.cumsum(self._bsum, dim=0)
        b = min(
            int(
                torch.searchsorted(
                    cum, torch.tensor([x], dtype=cum.dtype, device=cum.device), right=True
                )
            ),
            self.nb - 1,
        )
        rest = x - (float(cum[b - 1]) if b else 0.0)
        w = self._d2[b * BLOCK : (b + 1) * BLOCK].clamp_min(0.0).double()
        inner = torch.cumsum(w, dim=0)
        j = min(
            int(
                torch.searchsorted(
                    inner, torch.tensor([rest], dtype=inner.dtype, device=inner.device), right=True
                )
            ),
            BLOCK - 1,
        )
        if float(w[j]) <= 0.0:  # rounding at a block edge
            pos = (w > 0).nonzero()
            if pos.numel() == 0:
                self.refresh()
                return (
                    -1
                    if float(self._bsum.sum()) <= 0
                    else self._draw_stale(min(x, float(self._bsum.sum())) * 0.999999)
                )
            j = int(pos[-1, 0])
        return b * BLOCK + j

    def _update_blocks(self, rows: torch.Tensor) -> None:
        blocks = torch.unique(rows // BLOCK)
        view = self._d2.view(self.nb, BLOCK)[blocks]
        self._bmax[blocks] = view.amax(dim=1)
        self._bsum[blocks] = view.clamp_min(0.0).sum(dim=1, dtype=torch.float64)

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
