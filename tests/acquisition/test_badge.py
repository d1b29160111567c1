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
    metric = BadgeMetric(gradient_factors(torch.from_numpy(p), torch.device("cpu")),
                         torch.from_numpy(h))
    ref = ((g[:, None, :] - g[None, :40, :]) ** 2).sum(-1)
    got = metric.block(torch.arange(300), torch.arange(40)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.max())
    np.testing.assert_allclose(metric.sq_norm.numpy(), (g**2).sum(1), rtol=1e-5)
    for c in (0, 17):
        np.testing.assert_allclose(metric.to_center(c, None).numpy(), ref[:, c] if c < 40 else
                                   ((g - g[c]) ** 2).sum(1), rtol=1e-4, atol=1e-4 * ref.max())


def naive_badge(g, labeled, k, seed):
    """k-means++ on materialised gradients with the same draw protocol."""
    rng = np.random.default_rng([seed, 3])
    norms = (g**2).sum(1)
    norms[labeled] = -1
    picks = [int(np.argmax(norms))]
    d2 = ((g - g[picks[0]]) ** 2).sum(1)
    while len(picks) < k:
        w = d2.copy()
        w[labeled] = 0
        w[picks] = 0
        cum = np.cumsum(w)
        i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        picks.append(i)
        d2 = np.minimum(d2, ((g - g[i]) ** 2).sum(1))
    return np.array(picks)


def test_selection_equals_materialised_kmeanspp():
    p, h = make_pool(n=400, t=4, c=5, d=6, seed=2)
    labeled = np.zeros(400, bool)
    labeled[::10] = True
    for seed in range(3):
        got = select("badge", k=40, probs=p, embeddings=h, labeled=labeled, seed=seed)
        np.testing.assert_array_equal(got, naive_badge(gradients(p, h), labeled, 40, seed))


def test_probs_as_n_by_c():
    p, h = make_pool(n=100, t=1, c=3, d=4)
    a = select("badge", k=10, probs=p[:, 0], embeddings=h)
    np.testing.assert_array_equal(a, select("badge", k=10, probs=p, embeddings=h))
