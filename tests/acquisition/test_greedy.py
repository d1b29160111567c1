"""MinDistance: pruned incremental updates equal brute-force nearest-center distances."""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition._greedy import EuclideanMetric, MinDistance


def test_incremental_equals_brute_force():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(40, 3)) * 5)[rng.integers(0, 40, 2000)] + rng.normal(size=(2000, 3))
    xt = torch.from_numpy(x.astype(np.float32))
    state = MinDistance(EuclideanMetric(xt), torch.device("cpu"))
    state.seed(torch.tensor([0, 1, 2]))
    for c in rng.choice(2000, 60, replace=False):
        state.add(int(c))
    centers = np.array(state.centers)
    d2 = ((x[:, None, :] - x[None, centers, :]) ** 2).sum(-1)
    np.testing.assert_allclose(state.d2.numpy(), d2.min(1), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(
        d2[np.arange(2000), state.assign.numpy()].round(3), d2.min(1).round(3)
    )
    assert state.evaluated < 2000 * 63  # the bounds skipped work


def test_excluded_rows_are_never_updated():
    x = torch.randn(100, 4)
    state = MinDistance(EuclideanMetric(x), torch.device("cpu"))
    state.exclude(torch.tensor([5, 6]))
    state.add(0)
    state.add(1)
    assert torch.isinf(state.d2[[5, 6]]).all() and (state.d2[[5, 6]] < 0).all()
