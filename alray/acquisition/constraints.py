"""Video-aware selection constraint and the greedy ranking filter.

Driving video is highly redundant: two frames a few hundred milliseconds apart
carry nearly the same information. :class:`VideoConstraint` forbids returning
two frames of one group (e.g. the source video) less than ``min_gap_ms`` apart,
and optionally caps the frames taken per group. It is a pure mask update: each
pick blocks the rows it conflicts with, found by binary search in a
(group, timestamp) sort done once, so a pick costs ``O(log N + blocked rows)``.

Ranking selectors hand :func:`take_ranked` a priority order; greedy batch
selectors (k-center, BADGE, BatchBALD) call :meth:`VideoConstraint.pick` inside
their loop and drop the returned rows from their candidates.
"""

from __future__ import annotations

import numpy as np

from alray.acquisition._validation import check_float, check_int

__all__ = ["VideoConstraint", "near_taken", "take_ranked"]


class VideoConstraint:
    """Greedy mask over pool rows enforcing a per-group time gap and quota.

    Two rows conflict when they share a group and ``|t_i - t_j| < min_gap_ms``;
    returned rows of one group are therefore at least ``min_gap_ms`` apart.

    Args:
        groups: ``[N]`` group key per row (ints or strings, e.g. the video id).
        timestamps_ms: ``[N]`` timestamp per row in milliseconds; required with
            ``min_gap_ms``.
        min_gap_ms: Minimum time between two returned rows of one group, or
            ``None`` for no gap rule.
        max_per_group: At most this many returned rows per group, or ``None``.

    Raises:
        ValueError: On mismatched lengths, non-finite timestamps, a negative gap
            or a quota below 1.
    """

    def __init__(
        self,
        groups: np.ndarray,
        timestamps_ms: np.ndarray | None = None,
        min_gap_ms: float | None = None,
        max_per_group: int | None = None,
    ) -> None:
        g = np.asarray(groups)
        if g.ndim != 1:
            raise ValueError(f"groups: must be 1-D [N], got shape {g.shape}")
        n = g.shape[0]
        self.n = n
        self.gap = (
            None if min_gap_ms is None else check_float(min_gap_ms, "min_gap_ms", min_value=0)
        )
        self.quota = (
            None
            if max_per_group is None
            else check_int(max_per_group, "max_per_group", min_value=1)
        )
        if self.gap is not None and timestamps_ms is None:
            raise ValueError("min_gap_ms: needs timestamps_ms (one timestamp per pool row)")
        _, codes = np.unique(g, return_inverse=True)
        self.codes = codes.reshape(-1).astype(np.int64)  # [N]
        if timestamps_ms is None:
            t = np.zeros(n, dtype=np.float64)
        else:
            t = np.asarray(timestamps_ms, dtype=np.float64)
            if t.shape != (n,):
                raise ValueError(f"timestamps_ms: must have shape ({n},), got {t.shape}")
            if not np.isfinite(t).all():
                raise ValueError("timestamps_ms: must be finite (no NaN/inf)")
        self.order = np.lexsort((np.arange(n), t, self.codes))  # [N] by (group, time, row)
        self.sorted_t = t[self.order]
        self.t = t
        n_groups = int(self.codes.max()) + 1 if n else 0
        sorted_codes = self.codes[self.order]
        self.start = np.searchsorted(sorted_codes, np.arange(n_groups), side="left")
        self.end = np.searchsorted(sorted_codes, np.arange(n_groups), side="right")
        self.counts = np.zeros(n_groups, dtype=np.int64)
        self.blocked = np.zeros(n, dtype=bool)

    @classmethod
    def build(
        cls,
        n: int,
        groups: np.ndarray | None,
        timestamps_ms: np.ndarray | None,
        min_gap_ms: float | None,
        max_per_group: int | None,
    ) -> VideoConstraint | None:
        """Return a constraint, or ``None`` when no rule is requested.

        Args:
            n: Pool size ``N``.
            groups: ``[N]`` group keys or ``None``.
            timestamps_ms: ``[N]`` timestamps or ``None``.
            min_gap_ms: Gap rule or ``None``.
            max_per_group: Quota or ``None``.

        Returns:
            A fresh :class:`VideoConstraint` or ``None``.

        Raises:
            ValueError: If a rule is given without ``groups`` or lengths differ.
        """
        if groups is None:
            if min_gap_ms is not None or max_per_group is not None:
                raise ValueError(
                    "groups: required with min_gap_ms or max_per_group (e.g. the source video id)"
                )
            return None
        if np.asarray(groups).shape != (n,):
            raise ValueError(f"groups: must have shape ({n},), got {np.asarray(groups).shape}")
        if min_gap_ms is None and max_per_group is None:
            return None
        return cls(groups, timestamps_ms, min_gap_ms, max_per_group)

    def conflicts(self, row: int) -> np.ndarray:
        """Rows that may not be returned together with ``row`` (``row`` included).

        Args:
            row: A pool row index.

        Returns:
            ``int64`` row indices.
        """
        g = self.codes[row]
        s, e = int(self.start[g]), int(self.end[g])
        if self.quota is not None and self.counts[g] + 1 >= self.quota:
            return self.order[s:e]
        if not self.gap:
            return np.array([row], dtype=np.int64)
        t = self.t[row]
        window = self.sorted_t[s:e]
        lo = s + int(np.searchsorted(window, t - self.gap, side="right"))
        hi = s + int(np.searchsorted(window, t + self.gap, side="left"))
        return self.order[lo:hi]

    def pick(self, row: int) -> np.ndarray:
        """Record ``row`` as returned and block everything it conflicts with.

        Args:
            row: The picked pool row; must not be blocked.

        Returns:
            ``int64`` rows newly unavailable (``row`` included).

        Raises:
            ValueError: If ``row`` is already blocked.
        """
        if self.blocked[row]:
            raise ValueError(f"row {row} violates the video constraint")
        rows = self.conflicts(row)
        self.counts[self.codes[row]] += 1
        self.blocked[rows] = True
        return rows


def take_ranked(
    order: np.ndarray,
    k: int,
    constraint: VideoConstraint | None,
    available: np.ndarray,
    *,
    fill: bool = True,
) -> np.ndarray:
    """Take the first ``k`` rows of a priority order that satisfy the constraint.

    The loop runs once per accepted pick; rejected rows are skipped in
    vectorised blocks. With ``fill``, when ``order`` runs out before ``k`` picks
    the remaining available rows are tried in ascending index order.

    Args:
        order: ``int64[M]`` distinct row indices, best first (all available).
        k: Number of rows wanted.
        constraint: Video constraint, or ``None`` to take ``order[:k]``.
        available: ``bool[N]`` rows that may be returned at all.
        fill: Whether to continue with the rest of ``available`` after ``order``.

    Returns:
        ``int64[<=k]`` picked rows in pick order.
    """
    order = np.asarray(order, dtype=np.int64)
    if constraint is None:
        out = order[:k]
        if fill and out.size < k:
            rest = np.flatnonzero(available & ~np.isin(np.arange(available.size), out))
            out = np.concatenate([out, rest[: k - out.size]])
        return out
    picks: list[int] = []
    sources = [order]
    if fill:
        seen = np.zeros(available.size, dtype=bool)
        seen[order] = True
        sources.append(np.flatnonzero(available & ~seen))
    for src in sources:
        pos, block = 0, 64
        while len(picks) < k and pos < src.size:
            cand = src[pos : pos + block]
            free = np.flatnonzero(~constraint.blocked[cand])
            if free.size == 0:
                pos += cand.size
                block = min(block * 2, 1 << 20)
                continue
            j = int(free[0])
            row = int(cand[j])
            constraint.pick(row)
            picks.append(row)
            pos += j + 1
            block = 64
    return np.asarray(picks, dtype=np.int64)


def near_taken(
    groups: np.ndarray, timestamps_ms: np.ndarray, taken: np.ndarray, min_gap_ms: float
) -> np.ndarray:
    """Rows within ``min_gap_ms`` of a taken row of their group (taken rows excluded).

    Applies the video gap across rounds: rows this close to a frame selected or labeled
    earlier are not offered again. One sort and one binary search, no loop over rows.

    Args:
        groups: ``[N]`` group key per row.
        timestamps_ms: ``[N]`` timestamp per row in milliseconds.
        taken: ``bool[N]``, rows already selected or labeled.
        min_gap_ms: The gap, ``>= 0``.

    Returns:
        ``bool[N]``: untaken rows with a taken row of their group less than ``min_gap_ms``
        away.

    Raises:
        ValueError: On mismatched lengths, non-finite timestamps or a negative gap.
    """
    gap = check_float(min_gap_ms, "min_gap_ms", min_value=0)
    g = np.asarray(groups)
    n = g.shape[0]
    t = np.asarray(timestamps_ms, dtype=np.float64)
    taken = np.asarray(taken, dtype=bool)
    if t.shape != (n,) or taken.shape != (n,):
        raise ValueError(f"groups, timestamps_ms and taken must all have shape ({n},), got "
                         f"{g.shape}, {t.shape}, {taken.shape}")
    if not np.isfinite(t).all():
        raise ValueError("timestamps_ms: must be finite (no NaN/inf)")
    out = np.zeros(n, dtype=bool)
    if n == 0 or not taken.any() or gap == 0:
        return out
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    _, t_rank = np.unique(t, return_inverse=True)  # exact integer key (group, time)
    key = codes * (int(t_rank.max()) + 1) + t_rank.reshape(-1)  # [N]
    tk = np.flatnonzero(taken)
    tk = tk[np.argsort(key[tk], kind="stable")]  # taken rows by (group, time)
    pos = np.searchsorted(key[tk], key)  # [N] first taken row at or after each row
    for nb in (np.minimum(pos, tk.size - 1), np.maximum(pos - 1, 0)):  # both neighbours
        rows = tk[nb]
        out |= (codes[rows] == codes) & (np.abs(t[rows] - t) < gap)
    return out & ~taken
