"""`alray compare` end to end: every strategy family through the loop, summary files."""

import json

import yaml

from alray.cli import main
from alray.compare import build_summary, default_targets, labels_to_accuracy, target_key
from tests.conftest import small_config

# One strategy per input family: none, embeddings, probs, probs+embeddings, clustering.
STRATEGIES = ["random", "kcenter", "batchbald", "badge", "cluster_margin", "typiclust"]


def test_labels_to_accuracy():
    assert labels_to_accuracy([20, 30, 40], [0.5, 0.91, 0.89], 0.9) == 30
    assert labels_to_accuracy([20, 30], [0.5, 0.6], 0.9) is None


def test_build_summary_format():
    curves = {"bald": {0: [{"labels": 20, "test_accuracy": 0.8}, {"labels": 30, "test_accuracy": 0.96}],
                       1: [{"labels": 20, "test_accuracy": 0.91}]}}
    s = build_summary("mnist", curves, [0.9, 0.95])
    b = s["strategies"]["bald"]
    assert s["dataset"] == "mnist" and b["seeds"] == [0, 1] and b["labels"] == [20, 30]
    assert b["accuracy"] == [[0.8, 0.91], [0.96, None]]
    assert s["targets"] == ["0.90", "0.95"] and s["targets_from"] == "--targets"
    assert b["labels_to_accuracy"] == {"0.90": [30, 20], "0.95": [30, None]}
    assert b["final_accuracy"] == [0.96, 0.91]


def test_default_targets_come_from_the_best_final_accuracy():
    """95% and 99% of the best final test accuracy, rounded down to a whole percent."""
    curves = {"random": {0: [{"labels": 20, "test_accuracy": 0.5},
                             {"labels": 30, "test_accuracy": 0.62}]},
              "bald": {0: [{"labels": 20, "test_accuracy": 0.55},
                           {"labels": 30, "test_accuracy": 0.70}],
                       1: [{"labels": 20, "test_accuracy": None}]}}
    assert default_targets(curves) == [0.66, 0.69]
    s = build_summary("digits", curves)
    assert s["targets"] == ["0.66", "0.69"] and "best final test accuracy" in s["targets_from"]
    assert s["strategies"]["bald"]["labels_to_accuracy"] == {"0.66": [30, None],
                                                             "0.69": [30, None]}
    assert s["strategies"]["random"]["labels_to_accuracy"]["0.66"] == [None]
    assert default_targets({"x": {0: [{"labels": 5, "test_accuracy": None}]}}) == []
    assert target_key(0.925) == "0.925" and target_key(0.9) == "0.90"


def test_table_shows_per_seed_values_when_the_median_is_not_reached():
    from alray.cli import _cell

    assert _cell([30, 40, None]) == "40"
    assert _cell([30, None, None]) == "not reached (30, —, —)"
    assert _cell([None]) == "not reached (—)"


def test_compare_every_strategy_family(ray_session, tmp_path, capfd):
    cfg = small_config(tmp_path, **{"pool.limit": 500, "train.backend": "local",
                                    "train.max_epochs": 1, "loop.max_rounds": 1,
                                    "model.mc_samples": 4})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    out = tmp_path / "cmp"
    rc = main(["compare", str(path), "--strategies", ",".join(STRATEGIES), "--seeds", "1",
               "--targets", "0.05,0.999", "--out", str(out)])
    assert rc == 0
    printed = capfd.readouterr()
    lines = printed.out.splitlines()
    # One progress line per finished round of every run, then one per finished run.
    for name in STRATEGIES:
        assert sum(x.startswith(f"{name} seed 0: round ") for x in lines) == 2, printed.out
        assert any(x.startswith(f"{name} seed 0: done, 2 rounds, 30 labels") for x in lines)
    assert f"logs of Ray and LanceDB: {out / 'alray.log'}" in printed.out
    assert "labels to 5%" in printed.out and "not reached (—)" in printed.out  # 99.9%: never
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == set(STRATEGIES)
    assert summary["targets"] == ["0.05", "0.999"]
    for name, s in summary["strategies"].items():
        assert s["seeds"] == [0] and s["labels"] == [20, 30], name
        assert all(0 <= row[0] <= 1 for row in s["accuracy"]), name
        assert s["labels_to_accuracy"]["0.999"] == [None], name
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "learning_curve.csv").read_text().startswith("strategy,seed,labels,test_accuracy")


def test_compare_rejects_unknown_strategy_before_work(ray_session, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("pool:\n  limit: 10\n")
    assert main(["compare", str(path), "--strategies", "random,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().out
