"""The round loop end to end (real local Ray, LanceDB in a temp folder): the rank-change
diagnostic with ``candidate_pool``, the selection record and its exports, the balanced seed
set, near-duplicates of taken frames, and the spent-budget stop."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from alray.labels import LabelItem, submit_labels
from alray.local import export_selection
from alray.pipeline.ingest import ingest
from alray.rounds import RoundController
from alray.runner import run_project
from alray.storage import Store, sql_list
from tests.conftest import small_config


def test_rank_change_with_candidate_pool_compares_frames_both_models_scored(ray_session,
                                                                           tmp_path):
    # A model that never changes (no dropout, a learning rate too small to move a weight,
    # weights carried over): its ranking never changes, so the overlap must be exactly 1.0
    # every round, although each round scores another random subset of the pool.
    cfg = small_config(tmp_path, **{
        "train.backend": "local", "train.lr": 1e-12, "train.reinit_each_round": False,
        "model.dropout_p": 0.0, "acquisition.strategy": "entropy", "acquisition.score":
        "entropy", "acquisition.candidate_pool": 120, "acquisition.probe_size": 80,
        "loop.max_rounds": 3})
    store, reason = run_project(cfg)
    assert reason == "max_rounds"
    rounds = store.rounds()
    d = [r["diagnostics"] for r in rounds]
    assert d[1]["topk_overlap"] is None and d[1]["score_scope"] == "candidates"  # no earlier
    for n in (2, 3):
        assert d[n]["topk_overlap"] == 1.0 and d[n]["topk_overlap_vs"] == n - 1
        assert 40 <= d[n]["topk_overlap_frames"] <= 80  # the probe, less what was labeled
    probe = store.get_meta("rank_probe")
    assert len(probe) == 80 and store.get_meta("rank_probe/3")["ids"] == sorted(
        set(store.get_meta("rank_probe/3")["ids"]))

    # The selection record: one row per selected frame, in pick order, with the score under
    # the model that picked it, the strategy and that model's checkpoint.
    for r in rounds:
        sel = store.selections(r["round"]).to_pylist()
        picked = store.read_frames([], f"selected_round = {r['round']}")["frame_id"].to_pylist()
        assert sorted(s["frame_id"] for s in sel) == picked
        assert [s["rank"] for s in sel] == list(range(len(picked)))
        if r["round"] == 0:
            assert {s["strategy"] for s in sel} == {"random"}
            assert all(s["score"] is None and s["checkpoint_uri"] is None for s in sel)
            continue
        assert {s["strategy"] for s in sel} == {"entropy"}
        assert {s["checkpoint_uri"] for s in sel} == {rounds[r["round"] - 1]["checkpoint_uri"]}
        scores = [s["score"] for s in sel]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0  # top-k by entropy
        assert r["diagnostics"]["mean_score_selected"] == pytest.approx(np.mean(scores))
    # Exports read the record (frames.score of these frames was overwritten since).
    out = io.StringIO()
    assert export_selection(cfg, store, 1, "jsonl", out, media_dir=tmp_path / "media") == 10
    items = [json.loads(x) for x in out.getvalue().splitlines()]
    rec1 = {s["frame_id"]: s for s in store.selections(1).to_pylist()}
    for it in items:
        assert it["rank"] == rec1[it["frame_id"]]["rank"] and it["strategy"] == "entropy"
        assert it["score"] == pytest.approx(rec1[it["frame_id"]]["score"])


def test_balanced_seed_set_and_a_budget_the_stop_rule_cannot_see(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{
        "train.backend": "local", "acquisition.strategy": "random", "loop.initial_per_class": 2,
        "acquisition.batch_size": 10, "loop.label_budget": 30, "loop.max_rounds": 5})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)

    def all_but_one(store_: Store, round_n: int, ids: list[str]) -> None:
        """Labels from the ground truth, except that the first frame is never labeled."""
        gt = store_.ground_truth(ids[1:])
        submit_labels(store_, [LabelItem(f, int(gt[f]), f"t:{f}") for f in ids[1:]],
                      source="test")

    reason = RoundController(cfg, store, annotator=all_but_one, force=True).run()
    # 20 + 10 frames selected = the budget, 28 labeled: the next round would have k = 0.
    assert reason == "label_budget"
    rounds = store.rounds()
    assert [r["state"] for r in rounds] == ["COMPLETED", "COMPLETED"]
    assert [r["metrics"]["labels"] for r in rounds] == [19, 28]
    seed = store.read_frames([], "selected_round = 0")["frame_id"].to_pylist()
    gt = store.ground_truth(seed)
    assert np.bincount([gt[f] for f in seed], minlength=10).tolist() == [2] * 10
    assert rounds[0]["batch_size"] == 20 and store.selections(0).num_rows == 20
    assert RoundController(cfg, store).run() == "label_budget"  # re-running stays stopped
    assert len(store.rounds()) == 2


def _duplicate_pool(root, groups: int = 30, copies: int = 3):
    """Three class folders of distinct random images, each image saved ``copies`` times."""
    from PIL import Image

    rng = np.random.default_rng(5)
    for g in range(groups):
        cls = root / f"class{g % 3}"
        cls.mkdir(parents=True, exist_ok=True)
        arr = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
        for c in range(copies):
            Image.fromarray(arr).save(cls / f"g{g:02d}_copy{c}.png")
    return root


def test_near_duplicates_of_taken_frames_are_never_selected(ray_session, tmp_path):
    from alray.models import build_model

    cfg = small_config(tmp_path, **{
        "pool.uri": str(_duplicate_pool(tmp_path / "dups")), "pool.format": "image_folder",
        "pool.limit": None, "pool.val_fraction": 0.1, "pool.test_fraction": 0.1,
        "pool.dedup_threshold": 0.99999, "model.input_size": 32, "model.in_channels": 3,
        "model.embedding_dim": 32, "model.freeze_backbone": True, "train.backend": "local",
        "acquisition.strategy": "entropy", "acquisition.score": "entropy",
        "acquisition.candidate_pool": 20, "acquisition.probe_size": 8,
        "acquisition.batch_size": 5,
        "loop.initial_labels": 6, "loop.max_rounds": 3})
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pt"
    torch.save(build_model(cfg.model, 3).backbone.state_dict(), weights)
    cfg = cfg.with_overrides(**{"model.weights_uri": str(weights)})
    store, reason = run_project(cfg)
    assert reason == "max_rounds"
    t = store.read_frames(["image", "selected_round"], "split = 'pool'")
    content = np.asarray([hash(b) for b in t["image"].to_pylist()])
    rnd = np.asarray([-1 if r is None else r for r in t["selected_round"].to_pylist()])
    for n in range(1, 4):
        earlier = set(content[(rnd >= 0) & (rnd < n)])
        now = content[rnd == n]
        assert not earlier & set(now), f"round {n} selected a copy of a taken frame"
        assert len(set(now)) == len(now), f"round {n} selected two copies of one image"
        d = store.get_round(n)["diagnostics"]
        assert d["dedup_scope"] == "pool" and d["near_duplicates_withheld"] > 0
        assert d["embedding_cache"] and d["score_scope"] == "candidates"  # a subset scored
    recorded = store.db.open_table("near_duplicates").to_arrow()
    assert set(recorded["round"].to_pylist()) == {1, 2, 3}  # no round overwrote another's


@pytest.fixture()
def unlabeled_video_store(ray_session, tmp_path):
    from tests.sources.conftest import CUT, VIDEOS, WHITE, video_config

    d = tmp_path / "clips"
    d.mkdir()
    for name in (CUT, WHITE):
        (d / name).symlink_to(VIDEOS / name)
    cfg = video_config(tmp_path, d, **{"pool.every_n": 2})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    return cfg, store


def rule_annotator(store: Store, round_n: int, ids: list[str]) -> None:
    """A deterministic annotator for an unlabeled pool: class = (frame_index // 20) % 3."""
    t = store.read_frames(["frame_index"], f"frame_id IN {sql_list(ids)}")
    submit_labels(store, [LabelItem(f, int(i) // 20 % 3, f"rule:{f}") for f, i in zip(
        t["frame_id"].to_pylist(), t["frame_index"].to_pylist(), strict=True)], source="rule")


def test_balanced_seed_without_ground_truth_is_an_error(unlabeled_video_store):
    cfg, store = unlabeled_video_store
    cfg = cfg.with_overrides(**{"loop.initial_per_class": 2})
    with pytest.raises(ValueError, match=r"loop\.initial_per_class=2: needs the pool's ground"):
        RoundController(cfg, store, annotator=rule_annotator).run()
    assert store.rounds()[0]["state"] == "FAILED" and not store.selections(0).num_rows


@pytest.mark.parametrize("strategy", ["random", "entropy", "kcenter", "batchbald"])
def test_video_constraint_applies_in_every_round_by_every_strategy(unlabeled_video_store,
                                                                  strategy):
    cfg, store = unlabeled_video_store
    gap, quota = 400, 3
    cfg = cfg.with_overrides(**{
        "acquisition.strategy": strategy, "acquisition.batch_size": 4,
        "acquisition.video.min_gap_ms": gap, "acquisition.video.max_per_group": quota})
    assert RoundController(cfg, store, annotator=rule_annotator).run() == "max_rounds"
    t = store.read_frames(["source_id", "timestamp_ms", "selected_round"],
                          "selected_round IS NOT NULL")
    src = np.asarray(t["source_id"].to_pylist())
    ts = t["timestamp_ms"].to_numpy()
    rnd = t["selected_round"].to_numpy()
    assert np.bincount(rnd).tolist() == [6, 4, 4]  # every round found a full batch
    for clip in np.unique(src):  # across all rounds: no two frames of a clip within the gap
        assert (np.diff(np.sort(ts[src == clip])) >= gap).all(), (clip, np.sort(ts[src == clip]))
        assert (np.bincount(rnd[src == clip]) <= quota).all()
    assert len(np.unique(src)) == 2
    for n in (1, 2):
        assert store.get_round(n)["diagnostics"]["video_withheld"] > 0
        assert {s["strategy"] for s in store.selections(n).to_pylist()} == {strategy}
