"""The label-efficiency benchmark's pure parts: protocol -> config, percentiles, tables.

No training: the runs themselves are ``alray compare``'s (tested in tests/test_compare.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from alray.compare import build_summary
from alray.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_label_efficiency", ROOT / "benchmarks" / "label_efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


le = _load()


def _cfg(name: str, key: str, budget: int | None = None):
    p = le.DATASETS[name]
    base = load_config(ROOT / p.config)
    n = le.count_frames(base)
    return base.with_overrides(**le.protocol_overrides(p, n, p.variants[key], budget)), n


def test_mnist_maps_to_the_batchbald_protocol():
    for key, layers in (("mnist", "all"), ("mnist-head", "head")):
        cfg, n = _cfg("mnist", key)
        assert n == 10_000
        assert (cfg.pool.test_fraction, cfg.pool.val_fraction) == pytest.approx((0.2, 0.1))
        assert cfg.model.architecture == "mnist_cnn" and cfg.model.mc_layers == layers
        t = cfg.train
        assert (t.lr, t.batch_size, t.epoch_samples, t.max_epochs, t.patience) == (
            1e-3, 64, 5056, 30, 3)
        assert t.reinit_each_round and t.backend == "local"
        assert cfg.acquisition.candidate_pool is None and cfg.acquisition.batch_size == 10
        assert cfg.loop.initial_per_class == 2 and cfg.loop.label_budget == 300
        assert cfg.loop.max_rounds * 10 >= 300 - 20  # rounds never stop before the budget
        assert cfg.loop.target_accuracy is None and cfg.loop.plateau_rounds is None


def test_gtsrb_split_is_scaled_so_the_pool_holds_the_budget():
    cfg, n = _cfg("gtsrb", "gtsrb")
    assert n == 1307  # the committed subset: too small for test 800 / val 400 / pool 1,000
    test_f, val_f = cfg.pool.test_fraction, cfg.pool.val_fraction
    assert (1 - test_f - val_f) * n == pytest.approx(1000)
    assert test_f / val_f == pytest.approx(2.0)  # the protocol's test:val ratio kept
    assert cfg.loop.initial_per_class == 1 and cfg.acquisition.batch_size == 20
    assert cfg.acquisition.candidate_pool is None and cfg.model.mc_layers == "head"


def test_vehicles_and_quick_budget():
    cfg, n = _cfg("vehicles", "vehicles")
    assert n == 673
    assert cfg.loop.initial_per_class is None and cfg.loop.initial_labels == 20
    assert (cfg.acquisition.batch_size, cfg.loop.label_budget) == (20, 140)
    quick, _ = _cfg("mnist", "mnist", budget=le.QUICK_BUDGET)
    assert quick.loop.label_budget == 100


def test_split_fractions_exact_when_the_data_allow_and_error_when_not():
    assert le.split_fractions(10_000, 2000, 1000, 300) == (0.2, 0.1)
    with pytest.raises(ValueError, match="cannot hold a pool of 500"):
        le.split_fractions(400, 100, 50, 500)


def test_percentiles_match_numpy_and_mark_not_reached():
    vals = [140, 100, 120, 180]
    for q in (25, 50, 75):
        assert le.percentile(vals, q) == pytest.approx(np.percentile(vals, q))
    assert le.spread([100, None, 140]) == (120.0, 140.0, None)  # p75 falls on the miss
    assert le.spread([None, None, None]) == (None, None, None)
    assert le.spread([]) == (None, None, None)
    assert le.cell(None) == "not reached" and le.cell(105.0) == "105"
    assert le.ratio(60, 100) == 0.6 and le.ratio(None, 100) is None and le.ratio(60, None) is None


def _curve(accs: list[float], start: int = 20, step: int = 10) -> list[dict]:
    return [{"round": i, "labels": start + i * step, "val_accuracy": a, "test_accuracy": a}
            for i, a in enumerate(accs)]


def _summary() -> dict:
    curves = {
        "random": {0: _curve([0.5, 0.7, 0.85, 0.9]), 1: _curve([0.5, 0.6, 0.8, 0.88]),
                   2: _curve([0.5, 0.7, 0.8, 0.86])},
        "batchbald": {0: _curve([0.5, 0.9, 0.95, 0.96]), 1: _curve([0.5, 0.85, 0.9, 0.95]),
                      2: _curve([0.5, 0.8, 0.92, 0.93])},
    }
    s = build_summary("mnist-t10k", curves, [0.90, 0.95])
    s["round_seconds"] = {"random": {"scoring": None, "selecting": 0.01},
                          "batchbald": {"scoring": 2.5, "selecting": 1.25}}
    s["protocol"] = {"config": "configs/quickstart.yaml"}
    return s


def test_markdown_table_has_spread_and_not_reached():
    md = le.markdown({"mnist": _summary()})
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| ") and "strategy" not in line}
    # batchbald labels to 0.90: 30, 40, 40 -> p25 35, median 40, p75 40
    assert "| 35 / 40 / 40 |" in rows["batchbald"]
    # to 0.95: 40, 50, never -> p25 45, median 50, p75 not reached
    assert "45 / 50 / not reached" in rows["batchbald"]
    # random to 0.90: 50, never, never
    assert "not reached / not reached / not reached" in rows["random"]
    assert rows["batchbald"].rstrip().endswith("| 2.50 | 1.25 |")
    assert "| 0.950 |" in rows["batchbald"]  # median final accuracy


def test_bench_lines_ratio_against_random_of_the_same_run():
    lines = le.bench_lines("mnist", _summary(), "abc123")
    assert all(json.loads(json.dumps(x)) == x and x["bench"] == "label_efficiency"
               for x in lines)
    bb90 = next(x for x in lines if x["strategy"] == "batchbald" and x.get("target") == "0.90")
    assert bb90["labels_median"] == 40 and bb90["random_labels_median"] is None
    assert bb90["ratio_vs_random"] is None  # random's median never reached 90%
    vs = next(x for x in lines if x["strategy"] == "batchbald" and x.get("metric"))
    # random's median final accuracy 0.88, reached by batchbald at 40, 40, 50 labels
    assert vs["random_final_accuracy"] == pytest.approx(0.88)
    assert vs["labels_to_random_final_median"] == 40
    assert vs["ratio_vs_random"] == pytest.approx(40 / 50)
    assert vs["mean_curve_gap_vs_random"] > 0 and vs["scoring_s_per_round"] == 2.5
    rnd = next(x for x in lines if x["strategy"] == "random" and x.get("metric"))
    assert rnd["mean_curve_gap_vs_random"] == 0.0


def test_mc_layers_lines_give_the_scoring_time_ratio():
    a, h = _summary(), _summary()
    h["round_seconds"]["batchbald"]["scoring"] = 0.5
    lines = le.mc_layers_lines({"mnist": a, "mnist-head": h}, "abc")
    bb = next(x for x in lines if x["strategy"] == "batchbald")
    assert bb["scoring_ratio_head_over_all"] == 0.2
    assert bb["labels_median_all_0.90"] == bb["labels_median_head_0.90"] == 40
    assert le.mc_layers_lines({"mnist": a}, "abc") == []
