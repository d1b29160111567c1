"""k-center greedy against the naive per-pick implementation (google/active-learning)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances

from alray.acquisition import select
from alray.acquisition.constraints import VideoConstraint


def naive_kcenter(x, labeled, k, first=None, constraint=None):
    """Per pick: pairwise_distances of the pool to the new center, as the reference does."""
    x64 = x.astype(np.float64)
    lab = np.flatnonzero(labeled)
    if lab.size:
        mind = pairwise_distances(x64, x64[lab]).min(axis=1)
    else:
        mind = pairwise_distances(x64, x64[first : first + 1]).ravel()
    out = [] if lab.size else [first]
    if constraint is not None and out:
        constraint.pick(first)
    while len(out) < min(k, int((~labeled).sum())):
        cand = mind.copy()
        cand[labeled] = -1
        cand[out] = -1
        if constraint is not None:
            cand[constraint.blocked] = -1
        if cand.max() < 0:
            break
        i = int(np.argmax(cand))
        out.append(i)
        if constraint is not None:
            constraint.pick(i)
        mind = np.minimum(mind, pairwise_distances(x64, x64[i : i + 1]).ravel())
    return np.array(out)


def blobs(n, d, seed, centers=10):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(centers, d)) * 4
    return (mu[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_equals_naive_greedy(seed):
    x = blobs(800, 16, seed)
    labeled = np.zeros(800, bool)
    labeled[np.random.default_rng(seed).choice(800, 5, replace=False)] = True
    got = select("kcenter", k=120, embeddings=x, labeled=labeled)
    np.testing.assert_array_equal(got, naive_kcenter(x, labeled, 120))


def test_without_labeled_starts_from_seeded_random_row():
    x = blobs(300, 8, 1)
    got = select("kcenter", k=40, embeddings=x, seed=3)
    np.testing.assert_array_equal(got, naive_kcenter(x, np.zeros(300, bool), 40, first=int(got[0])))
    assert select("kcenter", k=1, embeddings=x, seed=3)[0] == got[0]


def test_duplicates_and_ties_go_to_lower_rows():
    base = blobs(50, 4, 2)
    x = np.concatenate([base, base, base])  # every row three times
    labeled = np.zeros(150, bool)
    labeled[0] = True
    got = select("kcenter", k=60, embeddings=x, labeled=labeled)
    np.testing.assert_array_equal(got, naive_kcenter(x, labeled, 60))


def test_video_constraint_inside_the_greedy_loop():
    x = blobs(400, 6, 4)
    groups = np.arange(400) % 7
    t = np.arange(400) * 33.0
    labeled = np.zeros(400, bool)
    labeled[:3] = True
    got = select(
        "kcenter",
        k=50,
        embeddings=x,
        labeled=labeled,
        groups=groups,
        timestamps_ms=t,
        min_gap_ms=2000,
    )
    ref = naive_kcenter(x, labeled, 50, constraint=VideoConstraint(groups, t, 2000))
    np.testing.assert_array_equal(got, ref)


def test_pruning_is_exact_on_structured_data():
    x = blobs(3000, 32, 5, centers=30)
    x[:, 16:] *= 0.01  # low intrinsic dimension: the bounds prune most rows
    labeled = np.zeros(3000, bool)
    labeled[:2] = True
    got = select("kcenter", k=150, embeddings=x, labeled=labeled)
    np.testing.assert_array_equal(got, naive_kcenter(x, labeled, 150))


def test_half_precision_runs_and_mostly_agrees():
    x = blobs(500, 16, 6)
    labeled = np.zeros(500, bool)
    labeled[0] = True
    a = select("kcenter", k=30, embeddings=x, labeled=labeled, half=True)
    b = select("kcenter", k=30, embeddings=x, labeled=labeled)
    assert len(set(a.tolist()) & set(b.tolist())) >= 20
