from alray.stopping import stop_reason

KW = dict(max_rounds=10, label_budget=None, target_accuracy=None, plateau_rounds=None,
          plateau_epsilon=0.01, pool_left=100)


def h(*accs, labels_step=10):
    return [{"round": i, "labels": 20 + i * labels_step, "val_accuracy": a}
            for i, a in enumerate(accs)]


def test_no_rule_fires_early():
    assert stop_reason([], **KW) is None
    assert stop_reason(h(0.5, 0.6), **KW) is None


def test_each_rule():
    assert stop_reason(h(0.5, 0.91), **{**KW, "target_accuracy": 0.9}) == "target_accuracy"
    assert stop_reason(h(0.5, 0.6), **{**KW, "label_budget": 30}) == "label_budget"
    assert stop_reason(h(0.5, 0.6, 0.7), **{**KW, "max_rounds": 2}) == "max_rounds"
    assert stop_reason(h(0.5), **{**KW, "pool_left": 0}) == "pool_exhausted"


def test_plateau_needs_n_consecutive_small_gains():
    kw = {**KW, "plateau_rounds": 2}
    assert stop_reason(h(0.5, 0.7, 0.705, 0.708), **kw) == "plateau"
    assert stop_reason(h(0.5, 0.7, 0.705, 0.75), **kw) is None
    assert stop_reason(h(0.7, 0.705), **kw) is None  # not enough rounds yet
