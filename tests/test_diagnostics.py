import numpy as np

from alray.diagnostics import class_balance, score_gap, topk_overlap


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
