"""The video constraint and the ranking filter."""

from __future__ import annotations

import numpy as np
import pytest

from alray.acquisition import VideoConstraint, select
from alray.acquisition.constraints import take_ranked


def test_gap_blocks_window_of_same_group_only():
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    t = np.array([0, 99, 100, 250, 50, 500], dtype=float)
    vc = VideoConstraint(groups, t, min_gap_ms=100)
    assert sorted(vc.pick(1).tolist()) == [0, 1, 2]  # 0 and 100 are < 100 ms from 99
    assert vc.blocked.tolist() == [True, True, True, False, False, False]  # group b untouched
    vc2 = VideoConstraint(groups, t, min_gap_ms=100)
    rows = vc2.pick(0)
    assert sorted(rows.tolist()) == [0, 1]  # 100 - 0 == gap: allowed
    assert not vc2.blocked[2] and not vc2.blocked[4]


def test_conflicts_exact_window():
    groups = np.zeros(5, int)
    t = np.array([0, 50, 100, 150, 200], float)
    vc = VideoConstraint(groups, t, min_gap_ms=100)
    assert sorted(vc.conflicts(2).tolist()) == [1, 2, 3]


def test_quota_blocks_group():
    groups = np.array([0, 0, 0, 1, 1])
    vc = VideoConstraint(groups, None, None, max_per_group=2)
    vc.pick(0)
    assert vc.blocked.tolist() == [True, False, False, False, False]
    vc.pick(1)
    assert vc.blocked.tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="violates"):
        vc.pick(2)


def test_take_ranked_skips_conflicts_and_fills():
    groups = np.zeros(6, int)
    t = np.arange(6) * 10.0
    vc = VideoConstraint(groups, t, min_gap_ms=15)
    avail = np.ones(6, bool)
    out = take_ranked(np.array([2, 3, 1]), 4, vc, avail)
    assert out.tolist() == [2, 0, 4]  # 3 and 1 conflict with 2; fill in index order
    assert take_ranked(np.array([5, 4]), 3, None, avail).tolist() == [5, 4, 0]


def test_validation():
    with pytest.raises(ValueError, match="timestamps_ms"):
        VideoConstraint(np.zeros(3), None, min_gap_ms=5)
    with pytest.raises(ValueError, match="finite"):
        VideoConstraint(np.zeros(2), np.array([0, np.nan]), min_gap_ms=5)
    with pytest.raises(ValueError, match="min_gap_ms=-1"):
        VideoConstraint(np.zeros(2), np.zeros(2), min_gap_ms=-1)
    with pytest.raises(ValueError, match="max_per_group=0"):
        VideoConstraint(np.zeros(2), None, max_per_group=0)
    with pytest.raises(ValueError, match="groups"):
        VideoConstraint.build(3, np.zeros(4), None, None, 1)
    assert VideoConstraint.build(3, np.zeros(3), None, None, None) is None


def test_select_spreads_frames_of_one_video():
    n = 100
    s = np.linspace(0, 1, n, dtype=np.float32)  # best frames are consecutive
    out = select(
        "entropy",
        k=5,
        scores=s,
        groups=np.zeros(n),
        timestamps_ms=np.arange(n) * 40.0,
        min_gap_ms=400,
    )
    assert out.tolist() == [99, 89, 79, 69, 59]


def test_near_taken_matches_brute_force():
    from alray.acquisition import near_taken

    rng = np.random.default_rng(3)
    n = 400
    groups = rng.choice(np.array(["a", "b", "c", "d"]), n)
    t = rng.integers(0, 5000, n).astype(np.float64)  # repeated timestamps included
    taken = rng.random(n) < 0.1
    got = near_taken(groups, t, taken, 120.0)
    same = groups[:, None] == groups[None, :]
    close = np.abs(t[:, None] - t[None, :]) < 120.0
    want = (same & close & taken[None, :]).any(axis=1) & ~taken
    np.testing.assert_array_equal(got, want)
    assert got.any() and not got[taken].any()
    assert not near_taken(groups, t, np.zeros(n, bool), 120.0).any()
    assert not near_taken(groups, t, taken, 0).any()
    with pytest.raises(ValueError, match="min_gap_ms"):
        near_taken(groups, t, taken, -1)
    with pytest.raises(ValueError, match="shape"):
        near_taken(groups, t[:-1], taken, 5)
