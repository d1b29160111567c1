"""MinDistance: deferred refreshes, exact lazy argmax and exact D² draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alray.acquisition import _greedy
from alray.acquisition._greedy import EuclideanMetric, MinDistance


def blobs(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(40, 3)) * 5)[rng.integers(0, 40, n)] + rng.normal(size=(n, 3))
    return x.astype(np.float32)


def brute(x, centers):
    d2 = ((x[:, None, :].astype(np.float64) - x[None, centers, :]) ** 2).sum(-1)
    return d2.min(1)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_stale_bounds_refresh_and_exact_top(batch, monkeypatch):
    monkeypatch.setattr(_greedy, "BLOCK", 128)  # several blocks on a small pool
    x = blobs()
    state = MinDistance(EuclideanMetric(torch.from_numpy(x)), torch.device("cpu"), batch=batch)
    state.seed(np.array([0, 1, 2]))
    rng = np.random.default_rng(1)
    for step, c in enumerate(rng.choice(np.arange(3, 3000), 40, replace=False)):
        state.exclude(np.array([c]))
        state.add(int(c))
        exact = brute(x, state.centers)
        exact[state.d2.numpy() == -np.inf] = -np.inf
        stale = state.d2.numpy()
        assert (stale >= exact - 1e-3).all()  # upper bounds
        value, row = state.top()
        assert value == pytest.approx(exact.max(), rel=1e-5)
        assert exact[row] == pytest.approx(exact.max(), rel=1e-5)
        if step % 10 == 0:
            rows = state.near(exact.max() * 0.9, 10**6)
            assert set(rows.tolist()) == set(np.flatnonzero(exact >= exact.max() * 0.9).tolist())
    state.refresh()
    got = state.d2.numpy()
    keep = got > -np.inf
    np.testing.assert_allclose(got[keep], brute(x, state.centers)[keep], rtol=1e-4, atol=1e-3)
    assert state.refreshes <= 3 + 40 // batch


def test_draws_follow_exact_distances_with_pending_centers(monkeypatch):
    monkeypatch.setattr(_greedy, "BLOCK", 8)
    x = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [11.0], [2.5], [7.0], [12.0]], np.float32)
    state = MinDistance(EuclideanMetric(torch.from_numpy(x)), torch.device("cpu"), batch=10)
    state.exclude(np.array([0]))
    state.add(0)  # first center: full refresh
    state.exclude(np.array([4]))
    state.add(4)  # pending: the stale distances ignore it until rows are drawn
    assert state.synced == 1
    d2 = brute(x, [0, 4])
    d2[[0, 4]] = 0
    rng = np.random.default_rng(0)
    draws = 4000
    counts = np.bincount([state.draw(rng) for _ in range(draws)], minlength=len(x))
    np.testing.assert_allclose(counts / draws, d2 / d2.sum(), atol=0.02)


def test_draw_uniform_when_all_at_zero_and_none_when_empty():
    x = np.zeros((5, 2), np.float32)
    state = MinDistance(EuclideanMetric(torch.from_numpy(x)), torch.device("cpu"))
    state.exclude(np.array([0]))
    state.add(0)
    assert state.draw(np.random.default_rng(0)) in {1, 2, 3, 4}
    state.exclude(np.arange(5))
    assert state.draw(np.random.default_rng(0)) == -1
    assert state.top() == (-np.inf, -1)
