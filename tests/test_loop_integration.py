"""End-to-end rounds through real Ray Data (scoring), Ray Train and LanceDB in a temp folder."""

import numpy as np
import pytest

import alray.rounds as rounds_mod
from alray.pipeline.ingest import ingest
from alray.rounds import IllegalTransition, RoundController, RoundState
from alray.runner import learning_curve, run_project
from alray.storage import Store
from tests.conftest import small_config


def check_invariants(store: Store, cfg) -> None:
    sel = store.read_frames(["split", "status", "selected_round", "labeled_round"],
                            "selected_round IS NOT NULL")
    # Never selected twice (one row per frame id), and never from val/test.
    ids = sel["frame_id"].to_pylist()
    assert len(ids) == len(set(ids))
    assert set(sel["split"].to_pylist()) <= {"pool"}
    # Every round's batch has its size; every selected frame got its label in that round.
    per_round = np.bincount(np.asarray(sel["selected_round"].to_pylist()))
    assert per_round[0] == cfg.loop.initial_labels
    assert (per_round[1:] == cfg.acquisition.batch_size).all()
    assert sel["selected_round"].to_pylist() == sel["labeled_round"].to_pylist()
    for r in store.rounds():
        assert r["diagnostics"].get("reselected", 0) == 0


def test_two_rounds_ray_train_bald(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"train.backend": "ray", "acquisition.strategy": "bald"})
    seen = []
    store, reason = run_project(cfg, on_round=seen.append)
    assert reason == "max_rounds"
    rounds = store.rounds()
    assert [r["state"] for r in rounds] == ["COMPLETED", "COMPLETED", "STOPPED"]
    assert [r["metrics"]["labels"] for r in rounds] == [20, 30, 40]
    for r in rounds:
        assert 0.0 <= r["metrics"]["test_accuracy"] <= 1.0 and r["checkpoint_uri"]
        assert r["metrics"]["world_size"] == 1
    d = rounds[2]["diagnostics"]
    for key in ("mean_score_labeled", "mean_score_unlabeled", "topk_overlap", "class_counts",
                "class_entropy", "reselected"):
        assert key in d, key
    # The score gap matches the scores written back to frames in that round's SCORING step.
    sc = store.read_frames(["score", "selected_round"], "split = 'pool' AND status != 'failed'")
    score = sc["score"].to_numpy(zero_copy_only=False)
    was_labeled = np.asarray(sc["selected_round"].to_pylist(), dtype=float) < 2  # NaN -> False
    np.testing.assert_allclose(d["mean_score_labeled"], score[was_labeled].mean(), rtol=1e-5)
    np.testing.assert_allclose(d["mean_score_unlabeled"], score[~was_labeled].mean(), rtol=1e-5)
    assert sum(d["class_counts"]) == 10
    check_invariants(store, cfg)
    assert set(store.frame_tags()) == {"round-0", "round-1", "round-2"}
    # Embeddings and scores were written back for the scored pool frames.
    assert store.count_frames("split = 'pool' AND score IS NOT NULL") > 0
    assert [p["labels"] for p in learning_curve(store)] == [20, 30, 40]


def test_resume_after_crash_mid_round_never_reselects(ray_session, tmp_path, monkeypatch):
    cfg = small_config(tmp_path, **{"train.backend": "local", "acquisition.strategy": "entropy",
                                    "loop.max_rounds": 2})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    real_mark = rounds_mod.mark_selected

    def crash_after_write(store_, ids, n):  # the selection is stored, then the process "dies"
        real_mark(store_, ids, n)
        raise RuntimeError("simulated crash after selection was written")

    monkeypatch.setattr(rounds_mod, "mark_selected", crash_after_write)
    ctl = RoundController(cfg, store)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ctl.run()
    failed = store.rounds()[-1]
    assert failed["state"] == "FAILED" and "simulated crash" in failed["error"]
    assert failed["diagnostics"]["failed_state"] in ("SEEDING", "SELECTING")
    picked_before = store.read_frames([], "selected_round IS NOT NULL")["frame_id"].to_pylist()

    monkeypatch.setattr(rounds_mod, "mark_selected", real_mark)
    reason = RoundController(cfg, store).run()  # a fresh controller: resumes from the store
    assert reason == "max_rounds"
    picked_after = store.read_frames([], f"selected_round = {failed['round']}")
    assert set(picked_before) <= set(store.read_frames([], "selected_round IS NOT NULL")
                                     ["frame_id"].to_pylist())
    assert picked_after.num_rows == (cfg.loop.initial_labels if failed["round"] == 0
                                     else cfg.acquisition.batch_size)
    check_invariants(store, cfg)


def test_rerun_with_higher_round_limit_continues(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"train.backend": "local", "acquisition.strategy": "random",
                                    "loop.max_rounds": 1})
    store, reason = run_project(cfg)
    assert reason == "max_rounds" and len(store.rounds()) == 2
    labeled = store.count_frames("status = 'labeled'")
    # Re-running with the same limit does nothing; raising it continues where it stopped.
    assert run_project(cfg)[1] == "max_rounds" and store.count_frames("status = 'labeled'") == labeled
    cfg2 = cfg.with_overrides(**{"loop.max_rounds": 2})
    store2, reason2 = run_project(cfg2)
    assert reason2 == "max_rounds"
    assert [r["state"] for r in store2.rounds()] == ["COMPLETED", "STOPPED", "STOPPED"]
    assert store2.count_frames("status = 'labeled'") == labeled + cfg.acquisition.batch_size
    check_invariants(store2, cfg2)


def test_illegal_transition_raises(tmp_path):
    store = Store(str(tmp_path / "s"))
    ctl = RoundController(small_config(tmp_path), store)
    rec = store.put_round({"round": 0, "state": "SEEDING", "metrics": {}, "diagnostics": {}})
    with pytest.raises(IllegalTransition, match="SEEDING -> TRAINING"):
        ctl._move(rec, RoundState.TRAINING)
