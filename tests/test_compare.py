"""`alray compare` end to end: every strategy family through the loop, summary files."""

import json

import yaml

from alray.cli import main
from alray.compare import build_summary, labels_to_accuracy
from tests.conftest import small_config

# One strategy per input family: none, embeddings, probs, probs+embeddings, clustering.
STRATEGIES = ["random", "kcenter", "batchbald", "badge", "cluster_margin", "typiclust"]


def test_labels_to_accuracy():
    assert labels_to_accuracy([20, 30, 40], [0.5, 0.91, 0.89], 0.9) == 30
    assert labels_to_accuracy([20, 30], [0.5, 0.6], 0.9) is None


def test_build_summary_format():
    curves = {"bald": {0: [{"labels": 20, "test_accuracy": 0.8}, {"labels": 30, "test_accuracy": 0.96}],
                       1: [{"labels": 20, "test_accuracy": 0.91}]}}
    s = build_summary("mnist", curves)
    b = s["strategies"]["bald"]
    assert s["dataset"] == "mnist" and b["seeds"] == [0, 1] and b["labels"] == [20, 30]
    assert b["accuracy"] == [[0.8, 0.91], [0.96, None]]
    assert b["labels_to_accuracy"] == {"0.90": [30, 20], "0.95": [30, None]}


def test_compare_every_strategy_family(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"pool.limit": 500, "train.backend": "local",
                                    "train.max_epochs": 1, "loop.max_rounds": 1,
                                    "model.mc_samples": 4})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    out = tmp_path / "cmp"
    rc = main(["compare", str(path), "--strategies", ",".join(STRATEGIES), "--seeds", "1",
               "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == set(STRATEGIES)
    for name, s in summary["strategies"].items():
        assert s["seeds"] == [0] and s["labels"] == [20, 30], name
        assert all(0 <= row[0] <= 1 for row in s["accuracy"]), name
        assert set(s["labels_to_accuracy"]) == {"0.90", "0.95"}
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "learning_curve.csv").read_text().startswith("strategy,seed,labels,test_accuracy")


def test_compare_rejects_unknown_strategy_before_work(ray_session, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("pool:\n  limit: 10\n")
    assert main(["compare", str(path), "--strategies", "random,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().out
