"""`alray compare` end to end: every strategy family through the loop, summary files."""

import json
import re

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
        assert set(s["labels_to_accuracy"]) == set(summary["targets"])
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "learning_curve.csv").read_text().startswith("strategy,seed,labels,test_accuracy")


def test_compare_progress_targets_and_per_seed_cells(ray_session, tmp_path, capfd):
    """Per-round lines for every run, targets from the data by default or from --targets,
    per-seed values where the median is not reached; a second call resumes from the stores."""
    cfg = small_config(tmp_path, **{"pool.limit": 300, "train.backend": "local",
                                    "train.max_epochs": 1, "train.epoch_samples": 64,
                                    "loop.max_rounds": 1, "acquisition.strategy": "random"})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    out = tmp_path / "cmp"
    args = ["compare", str(path), "--strategies", "random", "--seeds", "2", "--out", str(out)]
    assert main(args) == 0
    lines = capfd.readouterr().out.splitlines()
    for seed in (0, 1):
        rounds = [re.match(rf"random seed {seed}: round +(\d+) +(\d+) labels +val .* test .* s$",
                           x) for x in lines if x.startswith(f"random seed {seed}: round")]
        assert [(m[1], m[2]) for m in rounds] == [("0", "20"), ("1", "30")], lines
        assert any(x.startswith(f"random seed {seed}: done, 2 rounds, 30 labels") for x in lines)
    assert any(f"logs of Ray and LanceDB: {out / 'alray.log'}" in x for x in lines)
    summary = json.loads((out / "summary.json").read_text())
    curves = {"random": {k: [{"labels": n, "test_accuracy": row[k]}
                             for n, row in zip(summary["strategies"]["random"]["labels"],
                                               summary["strategies"]["random"]["accuracy"],
                                               strict=True)] for k in (0, 1)}}
    assert summary["targets"] == [target_key(t) for t in default_targets(curves)]
    assert "best final test accuracy" in summary["targets_from"]

    assert main([*args, "--targets", "0.05,0.999"]) == 0  # finished runs: read back, not rerun
    text = capfd.readouterr().out
    assert "round" not in text.split("logs of Ray")[1].split("Labels needed")[0].replace(
        "rounds", "")  # no new round ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["targets"] == ["0.05", "0.999"] and summary["targets_from"] == "--targets"
    lta = summary["strategies"]["random"]["labels_to_accuracy"]
    assert lta["0.999"] == [None, None] and lta["0.05"] == [20, 20]
    assert "labels to 5%" in text and "labels to 99.9%" in text
    assert "not reached (—, —)" in text


def test_compare_rejects_unknown_strategy_before_work(ray_session, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("pool:\n  limit: 10\n")
    assert main(["compare", str(path), "--strategies", "random,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().out
