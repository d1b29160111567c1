"""Cluster-based selectors: Cluster-Margin and TypiClust.

References:
    1. Citovsky, DeSalvo, Gentile, Karydas, Rajagopalan, Rostamizadeh, Kumar.
       "Batch Active Learning at Scale". NeurIPS 2021 (Cluster-Margin).
    2. Hacohen, Dekel, Weinshall. "Active Learning on a Budget: Opposite
       Strategies Suit High and Low Budgets". ICML 2022 (TypiClust).
"""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition._validation import check_float, check_int, rows_per_chunk
from alray.acquisition.base import Pool, RankingSelector, Selector, strategy_registry, top_order
from alray.acquisition.constraints import take_ranked
from alray.acquisition.kmeans import kmeans

__all__ = ["ClusterMarginSelector", "TypiClustSelector", "typicality"]


def _labels(pool: Pool, clusters: np.ndarray | None, n_clusters: int, stream: int) -> np.ndarray:
    if clusters is not None:
        lab = np.asarray(clusters)
        if lab.shape != (pool.n,) or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"clusters: must be int[{pool.n}] cluster ids, got {lab.dtype}{lab.shape}"
            )
        return lab.astype(np.int64)
    _, lab_t = kmeans(pool.embeddings, n_clusters, rng=pool.rng(stream))
    return lab_t.cpu().numpy()


@strategy_registry.register("cluster_margin")
class ClusterMarginSelector(RankingSelector):
    """Round-robin over clusters among the lowest-margin rows (Cluster-Margin).

    The pool is clustered once (k-means on ``embeddings``, or ``clusters`` given
    by the caller, e.g. cached across rounds). The ``margin_factor * k``
    available rows with the smallest top-2 margin are grouped by cluster;
    clusters are visited from the smallest to the largest, taking one random row
    from each per round, until ``k`` rows are taken.

    Args:
        n_clusters: Number of k-means clusters (default ``k``).
        margin_factor: Candidate pool size as a multiple of ``k`` (paper: ``k_m >= k``).
        clusters: ``int[N]`` precomputed cluster id per row (skips k-means).
    """

    requires = frozenset({"probs", "embeddings"})
    accepts_scores = True

    def __init__(
        self,
        n_clusters: int | None = None,
        margin_factor: float = 10.0,
        clusters: np.ndarray | None = None,
    ) -> None:
        self.n_clusters = (
            None if n_clusters is None else check_int(n_clusters, "n_clusters", min_value=1)
        )
        self.margin_factor = check_float(margin_factor, "margin_factor", min_value=1.0)
        self.clusters = clusters

    def needs(self) -> set[str]:
        """Inputs this configured instance needs (no embeddings with ``clusters``)."""
        return set(self.requires) - ({"embeddings"} if self.clusters is not None else set())

    def rank(self, pool: Pool, *, full: bool) -> np.ndarray:
        rows = np.flatnonzero(pool.available)
        margin = pool.get_scores("margin")[rows]  # higher = smaller top-2 gap
        m = min(rows.size, max(pool.k, int(np.ceil(self.margin_factor * pool.k))))
        cand = top_order(margin, rows, m)
        labels = _labels(pool, self.clusters, self.n_clusters or min(pool.k, rows.size), 5)
        order = round_robin(labels[cand], pool.rng(6))
        head = cand[order]
        if not full:
            return head
        rest = np.setdiff1d(rows, head, assume_unique=True)
        rest_margin = pool.get_scores("margin")[rest]
        return np.concatenate([head, top_order(rest_margin, rest, None)])


def round_robin(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Order items by round-robin over their clusters, smallest cluster first.

    Within a cluster the order is a random permutation; ties between equally
    sized clusters go to the lower cluster id.

    Args:
        labels: ``int64[M]`` cluster id per item.
        rng: Random generator.

    Returns:
        ``int64[M]`` permutation of ``range(M)``.
    """
    m = labels.size
    perm = rng.permutation(m)
    uniq, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    by_size = np.lexsort((uniq, counts))  # cluster visiting order
    visit = np.empty(uniq.size, dtype=np.int64)
    visit[by_size] = np.arange(uniq.size)
    grp = inv.reshape(-1)[perm]
    srt = np.argsort(grp, kind="stable")  # perm grouped by cluster, random inside
    starts = np.concatenate([[0], np.cumsum(np.bincount(grp, minlength=uniq.size))[:-1]])
    rank_in_cluster = np.empty(m, dtype=np.int64)
    rank_in_cluster[srt] = np.arange(m) - starts[grp[srt]]
    order = np.lexsort((visit[grp], rank_in_cluster))
    return perm[order]


def typicality(x: torch.Tensor, rows: torch.Tensor, n_neighbors: int) -> torch.Tensor:
    """Inverse mean distance to the ``n_neighbors`` nearest other rows among ``rows``.

    Args:
        x: ``float32[N, D]`` embeddings.
        rows: ``int64[M]`` rows of one cluster.
        n_neighbors: Neighbours averaged (capped at ``M - 1``).

    Returns:
        ``float32[M]`` typicality (higher = more typical).
    """
    m = rows.numel()
    if m == 1:
        return torch.ones(1, device=x.device)
    kk = min(n_neighbors, m - 1)
    feats = x[rows]
    sq = (feats**2).sum(dim=1)
    out = torch.empty(m, device=x.device)
    step = rows_per_chunk(m)
    for s in range(0, m, step):
        q = feats[s : s + step]
        d2 = (sq[s : s + step, None] + sq[None, :] - 2.0 * q @ feats.T).clamp_min_(0.0)
        d2[torch.arange(q.shape[0]), torch.arange(s, s + q.shape[0])] = float("inf")  # not self
        near = torch.topk(d2, kk, dim=1, largest=False).values.sqrt()
        out[s : s + step] = 1.0 / (near.mean(dim=1) + 1e-12)
    return out


@strategy_registry.register("typiclust")
class TypiClustSelector(Selector):
    """Cold-start seed set: the most typical row of each uncovered cluster (TypiClust).

    k-means with ``labeled + k`` clusters (at most ``max_clusters``); each pick
    takes the cluster with the fewest labeled-or-picked rows (ties: the larger
    cluster, then the lower id) and returns its most typical available row.
    Typicality is computed on at most ``max_cluster_sample`` random rows of a
    cluster, the candidates among them.

    Args:
        n_neighbors: Neighbours in the typicality estimate (paper: 20).
        max_clusters: Cap on the number of clusters (paper: 500).
        min_cluster_size: Clusters smaller than this are used only when no other is left.
        max_cluster_sample: Rows per cluster used to estimate typicality.
    """

    requires = frozenset({"embeddings"})

    def __init__(
        self,
        n_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        max_cluster_sample: int = 2000,
    ) -> None:
        self.n_neighbors = check_int(n_neighbors, "n_neighbors", min_value=1)
        self.max_clusters = check_int(max_clusters, "max_clusters", min_value=1)
        self.min_cluster_size = check_int(min_cluster_size, "min_cluster_size", min_value=1)
        self.max_cluster_sample = check_int(max_cluster_sample, "max_cluster_sample", min_value=2)

    def select(self, pool: Pool) -> np.ndarray:
        x = pool.embeddings
        n_clusters = min(int(pool.labeled.sum()) + pool.k, self.max_clusters, pool.n)
        _, lab_t = kmeans(x, n_clusters, rng=pool.rng(7))
        labels = lab_t.cpu().numpy()
        k_eff = int(labels.max()) + 1
        sizes = np.bincount(labels, minlength=k_eff)
        covered = np.bincount(labels[pool.labeled], minlength=k_eff)
        rng = pool.rng(8)
        by_label = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[by_label], np.arange(k_eff + 1))
        queues: dict[int, np.ndarray] = {}  # cluster -> available rows, most typical first
        exhausted = sizes == 0
        target = min(pool.k, pool.n_available)
        picks: list[int] = []
        while len(picks) < target and not exhausted.all():
            small = sizes < self.min_cluster_size
            order = np.lexsort((np.arange(k_eff), -sizes, covered, small, exhausted))
            c = int(order[0])
            if c not in queues:
                queues[c] = self._ranked(x, by_label[bounds[c] : bounds[c + 1]], pool, rng)
            q = queues[c]
            if pool.constraint is not None:
                q = q[~pool.constraint.blocked[q]]
            q = q[~np.isin(q, picks)]
            if q.size == 0:
                exhausted[c] = True
                continue
            row = int(q[0])
            queues[c] = q[1:]
            picks.append(row)
            covered[c] += 1
            if pool.constraint is not None:
                pool.constraint.pick(row)
        if len(picks) < target:  # sampled queues ran dry: random available rows
            left = pool.available.copy()
            left[picks] = False
            more = take_ranked(
                rng.permutation(np.flatnonzero(left)),
                target - len(picks),
                pool.constraint,
                left,
                fill=False,
            )
            picks.extend(more.tolist())
        return np.asarray(picks, dtype=np.int64)

    def _ranked(
        self, x: torch.Tensor, members: np.ndarray, pool: Pool, rng: np.random.Generator
    ) -> np.ndarray:
        if members.size > self.max_cluster_sample:
            members = np.sort(rng.choice(members, self.max_cluster_sample, replace=False))
        typ = typicality(x, torch.from_numpy(members).to(x.device), self.n_neighbors).cpu().numpy()
        ok = pool.available[members]
        return top_order(typ[ok].astype(np.float64), members[ok], None)
