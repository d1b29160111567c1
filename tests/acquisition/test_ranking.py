"""Top-k, random and stochastic (power/softmax/softrank) selection."""

from __future__ import annotations

import numpy as np
import pytest

from alray.acquisition import score, select
from tests.acquisition.conftest import make_pool


def test_topk_matches_sorted_scores_with_lower_row_ties():
    s = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5], np.float32)
    assert select("topk:entropy", k=4, scores=s).tolist() == [1, 3, 0, 2]
    p, _ = make_pool(n=200)
    ref = np.argsort(-score("bald", p), kind="stable")[:10]
    assert select("bald", k=10, probs=p).tolist() == ref.tolist()


def test_non_finite_scores_go_last_with_warning():
    s = np.array([np.nan, 0.2, np.inf, 0.1], np.float32)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert select("entropy", k=4, scores=s).tolist() == [1, 3, 0, 2]


def test_random_uses_seed_only():
    lab = np.zeros(50, bool)
    a = select("random", k=10, labeled=lab, seed=1)
    assert a.tolist() == select("random", k=10, labeled=lab, seed=1).tolist()
    assert a.tolist() != select("random", k=10, labeled=lab, seed=2).tolist()
    ref = np.random.default_rng(1).choice(np.arange(50), size=10, replace=False)
    assert a.tolist() == ref.tolist()


@pytest.mark.parametrize("kind", ["power", "softmax", "softrank"])
def test_large_beta_approaches_topk(kind):
    s = np.linspace(0.1, 1.0, 30, dtype=np.float32)
    got = select(f"{kind}:entropy", k=3, scores=s, beta=2000.0, seed=4)
    assert got.tolist() == [29, 28, 27]


def test_power_sampling_frequencies_follow_weights():
    s = np.array([1.0, 2.0, 0.0, 5.0], np.float32)
    counts = np.zeros(4)
    for seed in range(1000):
        counts[select("powerbald", k=1, scores=s, seed=seed)[0]] += 1
    np.testing.assert_allclose(counts / 1000, [1 / 8, 2 / 8, 0, 5 / 8], atol=0.05)


def test_zero_beta_is_uniform():
    s = np.array([0.0, 10.0, 0.0, 0.0], np.float32)
    counts = np.zeros(4)
    for seed in range(800):
        counts[select("softmax:bald", k=1, scores=s, beta=0.0, seed=seed)[0]] += 1
    assert counts.min() > 120
