"""Every example config in configs/ runs: ingest and one round, with the sizes shrunk.

Only sizes are overridden (epochs, samples, batch sizes, limits) and the store moved to a
temp folder (or a fresh S3 prefix); pool, format, model, strategy and the video constraint are
the files' own. The S3 example runs against the SeaweedFS server of ``tests/s3server.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alray.config import load_config
from alray.local import export_selection, push_labels
from alray.pipeline.ingest import ingest
from alray.rounds import RoundController
from alray.storage import Store
from tests.conftest import ROOT
from tests.sources.conftest import CUT, VIDEOS, WHITE

CONFIGS = ROOT / "configs"
TINY = {"train.max_epochs": 1, "train.epoch_samples": 32, "train.batch_size": 16,
        "train.patience": 1, "model.mc_samples": 2, "acquisition.scoring_batch_size": 64,
        "loop.max_rounds": 1, "loop.label_budget": None}


def example(name: str, store_uri: str, **overrides):
    cfg = load_config(CONFIGS / name)
    return cfg.with_overrides(**{**TINY, "storage.uri": store_uri, **overrides})


def test_every_example_is_tested():
    tested = {"quickstart.yaml", "gtsrb-resnet.yaml", "vehicles-manifest.yaml",
              "dashcam-s3.yaml", "service.yaml"}
    assert {p.name for p in CONFIGS.glob("*.yaml")} == tested


def _selected(store: Store, n: int) -> dict:
    t = store.read_frames(["source_id", "timestamp_ms", "split"], f"selected_round = {n}")
    return {k: np.asarray(t[k].to_pylist()) for k in ("frame_id", "source_id", "timestamp_ms",
                                                       "split")}


def test_gtsrb_image_folder_with_a_torchvision_backbone(ray_session, tmp_path):
    cfg = example("gtsrb-resnet.yaml", str(tmp_path / "store"), **{
        "pool.limit": 160, "loop.initial_labels": 16, "acquisition.batch_size": 8,
        "acquisition.candidate_pool": 40})
    assert cfg.model.architecture == "resnet18" and cfg.pool.path_column == "Path"
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert (s.frames_added, s.failed, s.labeled) == (160, 0, 160)
    assert s.classes == [str(i) for i in range(43)] and s.notices == []
    gt = store.ground_truth(["Images/00002/00000_00015.ppm"])
    assert gt == {"Images/00002/00000_00015.ppm": 2}
    assert RoundController(cfg, store).run() == "max_rounds"
    sel = _selected(store, 1)
    assert len(sel["frame_id"]) == 8 and set(sel["split"]) == {"pool"}
    assert store.rounds()[-1]["metrics"]["labels"] == 24


def test_vehicles_manifest_with_a_per_sequence_quota(ray_session, tmp_path):
    cfg = example("vehicles-manifest.yaml", str(tmp_path / "store"), **{
        "pool.limit": 150, "loop.initial_labels": 12, "acquisition.batch_size": 4,
        "acquisition.video.max_per_group": 2})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert (s.frames_added, s.failed) == (150, 0) and s.classes == ["non-vehicle", "vehicle"]
    assert any("resized to 32x32" in n and "64x64" in n for n in s.notices)
    ids = store.read_frames([])["frame_id"].to_pylist()
    assert all(i.startswith("vehicles-gti-64x64/") for i in ids)  # relative to the manifest
    assert RoundController(cfg, store).run() == "max_rounds"
    sel = _selected(store, 1)
    _, counts = np.unique(sel["source_id"], return_counts=True)
    # the first 150 rows hold two GTI sequences: the quota spreads the picks over both
    assert len(sel["frame_id"]) == 4 and counts.tolist() == [2, 2]


def _human_labels(store: Store, n: int) -> list[dict]:
    """What an annotator sends back for round n: a class name per selected frame."""
    ids = _selected(store, n)["frame_id"]
    return [{"frame_id": f, "label": ("clear", "traffic")[i % 2]} for i, f in enumerate(ids)]


def _video_round_trip(cfg, store: Store, tmp_path: Path) -> dict:
    """Ingest, round 0 awaits labels, export + push them, then round 1 selects."""
    s = ingest(cfg, store)
    assert s.failed == 0 and s.labeled == 0 and s.classes == ["clear", "traffic"]
    assert any("ships no labels" in n for n in s.notices)
    controller = RoundController(cfg, store, annotator=None)
    assert controller.run() == "awaiting_labels"
    n0 = len(_selected(store, 0)["frame_id"])
    assert 0 < n0 <= cfg.loop.initial_labels  # the video constraint may leave fewer
    out = tmp_path / "round0.json"
    with out.open("w") as f:
        assert export_selection(cfg, store, 0, "label-studio", f,
                                media_dir=tmp_path / "media") == n0
    assert len(json.loads(out.read_text())) == n0
    assert "traffic" in out.read_text()  # the pool's classes are the annotators' choices
    res = push_labels(cfg, store, _human_labels(store, 0))
    assert res["accepted"] == n0, res
    assert controller.run() == "awaiting_labels"  # trained round 0, selected round 1
    assert [r["state"] for r in store.rounds()] == ["COMPLETED", "AWAITING_LABELS"]
    return _selected(store, 1)


def _picked(store: Store) -> dict:
    """Every frame selected so far (all rounds)."""
    t = store.read_frames(["source_id", "timestamp_ms"], "selected_round IS NOT NULL")
    return {k: np.asarray(t[k].to_pylist()) for k in ("frame_id", "source_id", "timestamp_ms")}


def _assert_video_constraint(sel: dict, min_gap_ms: float | None, max_per_group: int | None):
    for sid in np.unique(sel["source_id"]):
        ts = np.sort(sel["timestamp_ms"][sel["source_id"] == sid])
        if min_gap_ms is not None:
            assert (np.diff(ts) >= min_gap_ms).all(), (sid, ts)
        if max_per_group is not None:
            assert ts.size <= max_per_group, (sid, ts)


@pytest.fixture(scope="module")
def dashcam_bucket():
    """SeaweedFS on loopback with the two clips under s3://dashcam/videos/."""
    from tests.s3server import start_s3_server

    server = start_s3_server()
    server.upload("dashcam", {f"videos/{CUT}": VIDEOS / CUT, f"videos/{WHITE}": VIDEOS / WHITE})
    yield server
    server.stop()


def test_video_pool_on_s3_with_the_video_constraint(ray_session, tmp_path, dashcam_bucket,
                                                    monkeypatch):
    for k, v in dashcam_bucket.env.items():
        monkeypatch.setenv(k, v)
    # The store goes to a temp folder: this session's Ray workers started before the S3
    # variables were set (ingest hands them to its decode tasks; the scoring actors read
    # checkpoints with the worker's own environment, as on a cluster whose hosts all have it).
    cfg = example("dashcam-s3.yaml", str(tmp_path / "store"), **{
        "loop.initial_labels": 3, "acquisition.batch_size": 2, "model.input_size": 32})
    assert cfg.pool.uri == "s3://dashcam/videos" and cfg.acquisition.video.min_gap_ms == 2000
    store = Store(cfg.storage.uri)
    sel = _video_round_trip(cfg, store, tmp_path)
    assert 0 < len(sel["frame_id"]) <= 2 and set(sel["split"]) == {"pool"}
    assert {f.rsplit(":", 1)[0] for f in sel["frame_id"]} <= {CUT, WHITE}
    _assert_video_constraint(sel, 2000, 3)
    _assert_video_constraint(_picked(store), 2000, None)  # across rounds too


def test_service_project_labels_from_people(ray_session, tmp_path):
    cfg = example("service.yaml", str(tmp_path / "store"), **{
        "loop.initial_labels": 4, "acquisition.batch_size": 3, "model.input_size": 32})
    store = Store(cfg.storage.uri)
    sel = _video_round_trip(cfg, store, tmp_path)
    assert 0 < len(sel["frame_id"]) <= 3
    _assert_video_constraint(_picked(store), cfg.acquisition.video.min_gap_ms, None)
