import numpy as np

from alray.diagnostics import class_balance, paired_topk_overlap, score_gap, topk_overlap


def test_score_gap_hand_computed():
    d = score_gap(np.array([1.0, 2.0, 3.0, 5.0]), np.array([True, False, True, False]))
    assert d == {"mean_score_labeled": 2.0, "mean_score_unlabeled": 3.5}


def test_topk_overlap():
    before = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert topk_overlap(before, before, 2) == 1.0
    assert topk_overlap(before, -before, 2) == 0.0
    assert topk_overlap(before, np.array([5.0, 0, 4, 0, 0]), 2) == 0.5
    assert topk_overlap(np.full(3, np.nan), before[:3], 2) is None


def test_class_balance():
    d = class_balance(np.array([0, 1, 0, 1]), 2)
    assert d["class_counts"] == [2, 2] and abs(d["class_entropy"] - 1.0) < 1e-9
    assert class_balance(np.array([1, 1]), 3)["class_entropy"] == 0.0


def test_paired_overlap_compares_only_frames_both_models_scored():
    # One fixed ranking; each "round" scores a different random subset, and the score scale
    # shrinks as the model grows confident (BALD does). Mixing stored scores of different
    # rounds (what frames.score holds under candidate_pool) scrambles the top-k; comparing
    # the frames both models scored does not.
    rng = np.random.default_rng(0)
    n, k = 2000, 20
    truth = rng.random(n)
    ids = np.array([f"f{i:05d}" for i in range(n)])
    stored = np.full(n, np.nan)
    for scale, frac in [(1.0, 0.3), (0.5, 0.3), (0.25, 0.3)]:  # three earlier rounds
        sub = rng.random(n) < frac
        stored[sub] = scale * truth[sub]
    now = rng.random(n) < 0.3  # this round's candidates
    after = 0.1 * truth[now]
    mixed = topk_overlap(stored[now], after, k)  # the old diagnostic
    assert mixed is not None and mixed < 0.8
    last = rng.random(n) < 0.3  # the previous round's scored frames (sorted ids)
    overlap, common = paired_topk_overlap(ids[last], 0.25 * truth[last], ids[now], after, k)
    assert overlap == 1.0 and common == int((last & now).sum()) > 0
    assert paired_topk_overlap(ids[:0], np.zeros(0), ids[now], after, k) == (None, 0)
    # A changed ranking shows up.
    worse, _ = paired_topk_overlap(ids[last], -truth[last], ids[now], after, k)
    assert worse == 0.0
