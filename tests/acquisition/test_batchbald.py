"""BatchBALD against exhaustive joint-entropy greedy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alray.acquisition import select
from alray.acquisition.batchbald import Configurations


def make_probs(n, t, c, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, t, c)) * 2 + rng.normal(size=(n, 1, c)) * 2
    p = np.exp(z - z.max(2, keepdims=True))
    return (p / p.sum(2, keepdims=True)).astype(np.float32)


def _h(q):
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def exhaustive_batchbald(p, k, candidates=None):
    """Greedy on I(y_1..y_n; w) with the joint over all C^n configurations built explicitly."""
    n, t, c = p.shape
    p = p.astype(np.float64)
    cond = np.array([np.mean([_h(p[i, s]) for s in range(t)]) for i in range(n)])
    picks, joint = [], np.ones((t, 1))
    cand = range(n) if candidates is None else candidates
    for _ in range(k):
        best = None
        for i in cand:
            if i in picks:
                continue
            j = (joint[:, :, None] * p[i][:, None, :]).reshape(t, -1)
            gain = _h(j.mean(0)) - cond[i]
            if best is None or gain > best[0]:
                best = (gain, i)
        picks.append(best[1])
        joint = (joint[:, :, None] * p[best[1]][:, None, :]).reshape(t, -1)
    return picks


@pytest.mark.parametrize("seed", range(4))
def test_equals_exhaustive_in_exact_regime(seed):
    p = make_probs(50, 6, 3, seed)
    ref = exhaustive_batchbald(p, 5)
    for lazy in (True, False):
        got = select(
            "batchbald", k=5, probs=p, num_candidates=50, max_exact_configs=10**5, lazy=lazy
        )
        assert got.tolist() == ref


def test_prefilter_keeps_top_bald_candidates():
    p = make_probs(80, 5, 3, 7)
    from alray.acquisition import score

    top = np.argsort(-score("bald", p), kind="stable")[:12]
    got = select("batchbald", k=4, probs=p, num_candidates=12)
    assert set(got.tolist()) <= set(top.tolist())
    assert got.tolist() == exhaustive_batchbald(p, 4, candidates=sorted(top.tolist()))


def test_first_pick_is_top_bald_and_labeled_skipped():
    p = make_probs(40, 5, 3, 1)
    from alray.acquisition import score

    b = score("bald", p)
    labeled = np.zeros(40, bool)
    labeled[np.argmax(b)] = True
    got = select("batchbald", k=3, probs=p, labeled=labeled)
    assert got[0] == np.argsort(-b, kind="stable")[1]


def test_exact_configurations_give_joint_entropy():
    p = make_probs(4, 5, 3, 2)
    cfg = Configurations(5, torch.device("cpu"), 10**4, 100, np.random.default_rng(0))
    for i in range(3):
        cfg.add(torch.from_numpy(p[i]))
    joint = np.ones((5, 1))
    for i in range(3):
        joint = (joint[:, :, None] * p[i][:, None, :].astype(np.float64)).reshape(5, -1)
    pj = joint.mean(0)
    h_b = _h(pj)
    h_b4 = _h((joint[:, :, None] * p[3][:, None, :]).reshape(5, -1).mean(0))
    got = cfg.conditional_entropy(torch.from_numpy(p[3:4]))[0].item()
    assert got == pytest.approx(h_b4 - h_b, rel=1e-5)  # H(y_4 | y_1..3)


def test_sampled_regime_estimates_conditional_entropy():
    p = make_probs(4, 8, 3, 3)
    exact = Configurations(8, torch.device("cpu"), 10**4, 100, np.random.default_rng(0))
    sampled = Configurations(8, torch.device("cpu"), 3, 40000, np.random.default_rng(0))
    for i in range(3):
        exact.add(torch.from_numpy(p[i]))
        sampled.add(torch.from_numpy(p[i]))
    assert exact.exact and not sampled.exact
    q = torch.from_numpy(p[3:4])
    e, s = exact.conditional_entropy(q)[0].item(), sampled.conditional_entropy(q)[0].item()
    assert s == pytest.approx(e, abs=0.02)


def test_long_batches_stay_finite():
    p = make_probs(300, 10, 4, 4)
    got = select("batchbald", k=60, probs=p, num_samples=200)
    assert len(set(got.tolist())) == 60
