"""BADGE: factorised distances equal materialised gradient embeddings; the selection too."""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition import select
from alray.acquisition.badge import BadgeMetric, gradient_factors
from tests.acquisition.conftest import make_pool


def gradients(p, h):
    pm = p.mean(axis=1).astype(np.float64)
    a = pm.copy()
    a[np.arange(len(a)), pm.argmax(1)] -= 1.0
    return (a[:, :, None] * h[:, None, :].astype(np.float64)).reshape(len(a), -1)  # [N, C*D]


def test_factorised_distances_equal_materialised():
    p, h = make_pool(n=300, t=5, c=4, d=7)
    g = gradients(p, h)
    metric = BadgeMetric(
        gradient_factors(torch.from_numpy(p), torch.device("cpu")), torch.from_numpy(h)
    )
    ref = ((g[:, None, :] - g[None, :40, :]) ** 2).sum(-1)
    feats = metric.features(torch.arange(40))
    for rows in (slice(0, 300), torch.arange(300)):
        got = metric.dist(rows, feats).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.max())
    np.testing.assert_allclose(metric.sq_norm.numpy(), (g**2).sum(1), rtol=1e-5)


def test_first_pick_is_largest_gradient_and_distances_stay_exact(monkeypatch):
    from alray.acquisition import _greedy

    p, h = make_pool(n=400, t=4, c=5, d=6, seed=2)
    g = gradients(p, h)
    labeled = np.zeros(400, bool)
    labeled[::10] = True
    seen = []
    orig = _greedy.MinDistance.add

    def spy(self, c):
        orig(self, c)
        self.refresh()
        seen.append((list(self.centers), self.d2.numpy().copy()))

    monkeypatch.setattr(_greedy.MinDistance, "add", spy)
    got = select("badge", k=30, probs=p, embeddings=h, labeled=labeled, seed=1)
    norms = (g**2).sum(1)
    norms[labeled] = -1
    assert got[0] == np.argmax(norms)
    for centers, d2 in seen:
        ref = ((g[:, None, :] - g[None, centers, :]) ** 2).sum(-1).min(1)
        keep = d2 > -np.inf
        np.testing.assert_allclose(d2[keep], ref[keep], rtol=1e-4, atol=1e-4 * norms.max())
        assert not keep[labeled].any() and not keep[centers].any()


def test_draws_follow_squared_gradient_distance():
    p, h = make_pool(n=12, t=3, c=3, d=4, seed=4)
    g = gradients(p, h)
    first = int(np.argmax((g**2).sum(1)))
    d2 = ((g - g[first]) ** 2).sum(1)
    counts = np.zeros(12)
    for seed in range(500):
        counts[select("badge", k=2, probs=p, embeddings=h, seed=seed)[1]] += 1
    np.testing.assert_allclose(counts / 500, d2 / d2.sum(), atol=0.07)


def test_probs_as_n_by_c():
    p, h = make_pool(n=100, t=1, c=3, d=4)
    a = select("badge", k=10, probs=p[:, 0], embeddings=h)
    np.testing.assert_array_equal(a, select("badge", k=10, probs=p, embeddings=h))
