"""Video ingestion through real Ray Data into a real LanceDB store."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from alray.cli import main
from alray.pipeline.ingest import ingest
from alray.storage import Store
from tests.sources.conftest import VIDEOS, WHITE, video_config


def test_reingest_adds_nothing_new_video_adds_its_frames(ray_session, tmp_path, video_dir):
    cfg = video_config(tmp_path, video_dir, **{"pool.every_n": 3})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert (s.sources, s.frames_added, s.frames_present, s.failed) == (1, 26, 0, 0)
    assert any(ix.columns == ["frame_id"] for ix in store.frames.list_indices())  # label lookups
    again = ingest(cfg, store)
    assert (again.frames_added, again.frames_present) == (0, 26)
    shutil.copy(VIDEOS / WHITE, video_dir / WHITE)
    (video_dir / "broken.mov").write_bytes(b"\x00" * 5000)
    more = ingest(cfg, store)
    assert (more.sources, more.frames_added, more.frames_present) == (3, 74 + 1, 26)
    assert more.failed == 1 and more.failures[0]["frame_id"] == "broken.mov:-1"
    assert "cannot decode" in more.failures[0]["error"]
    assert store.count_frames() == 26 + 74 + 1
    ids = store.read_frames([])["frame_id"].to_pylist()
    assert len(ids) == len(set(ids))  # zero duplicates
    row = store.read_frames(["status", "error", "timestamp_ms"], "frame_id = 'solidWhiteRight.mp4:3'")
    assert row["status"][0].as_py() == "unlabeled" and row["timestamp_ms"][0].as_py() == 120
    assert store.read_frames(["status"], "frame_id = 'broken.mov:-1'")["status"][0].as_py() == "failed"


def test_interrupted_ingest_resumes_without_duplicates(ray_session, tmp_path):
    src = tmp_path / "pool"
    src.mkdir()
    shutil.copy(VIDEOS / WHITE, src / WHITE)
    cfg = video_config(tmp_path, src, **{"pool.batch_frames": 16, "pool.every_n": 2})
    store = Store(cfg.storage.uri)

    class Crash(Exception):
        pass

    def crash(summary):
        raise Crash(f"killed after {summary.frames_added} frames")

    with pytest.raises(Crash):
        ingest(cfg, store, on_batch=crash)
    written = store.count_frames()
    assert 0 < written < 111
    s = ingest(cfg, store)
    assert (s.frames_added, s.frames_present) == (111 - written, written)
    ids = store.read_frames([])["frame_id"].to_pylist()
    assert len(ids) == 111 == len(set(ids))


def test_cli_ingest_json_summary(ray_session, tmp_path, video_dir, capsys):
    (video_dir / "bad.avi").write_bytes(b"RIFF" + b"\x01" * 3000)
    cfg = {"pool": {"uri": str(video_dir), "format": "video", "sampling": "fps", "fps": 2.0,
                    "val_fraction": 0.1, "test_fraction": 0.1},
           "model": {"input_size": 32, "in_channels": 3, "embedding_dim": 16},
           "storage": {"uri": str(tmp_path / "cli-store")}}
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["ingest", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["frames_added"] == 7 + 1 and out["failed"] == 1 and out["sources"] == 2
    assert out["failures"][0]["frame_id"] == "bad.avi:-1" and out["failures"][0]["error"]
    assert out["frames_per_second"] > 0 and "write" in out["stage_seconds"]
    assert main(["ingest", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["frames_added"], out["frames_present"]) == (0, 8)


def test_inflight_budget_sizing_and_a_tight_budget_still_streams(ray_session, tmp_path,
                                                                  video_dir, frozen_weights):
    from alray.pipeline.ray_runtime import inflight_bytes

    cfg = video_config(tmp_path, video_dir)
    assert inflight_bytes(cfg) == 512 << 20  # small frames: the floor
    big = cfg.with_overrides(**{"model.input_size": 224, "pool.batch_frames": 512})
    assert inflight_bytes(big) == 32 * 512 * 224 * 224 * 3  # 32 decoded batches
    assert inflight_bytes(big.with_overrides(**{"pool.inflight_mb": 64})) == 64 << 20
    # The smallest budget allowed, embedding on the way: it may slow the pipeline down,
    # never stall it or drop frames.
    tight = cfg.with_overrides(**{
        "pool.inflight_mb": 16, "pool.batch_frames": 8, "pool.embed_on_ingest": True,
        "model.freeze_backbone": True, "model.weights_uri": str(frozen_weights)})
    s = ingest(tight, Store(tight.storage.uri))
    assert (s.frames_added, s.failed) == (76, 0)
    emb = Store(tight.storage.uri).read_frames(["embedding"])["embedding"]
    assert emb.null_count == 0 and len(emb) == 76


def test_gather_cuts_blocks_into_write_batches(ray_session):
    import numpy as np
    import ray

    from alray.pipeline.ingest import _gather

    ds = ray.data.range(103, override_num_blocks=3).map_batches(
        lambda b: {"frame_id": b["id"], "x": b["id"] * 2})
    batches = list(_gather(ds, 25))
    assert [len(b["frame_id"]) for b in batches] == [25, 25, 25, 25, 3]
    ids = np.concatenate([b["frame_id"] for b in batches])
    assert sorted(ids.tolist()) == list(range(103))
    assert all((b["x"] == b["frame_id"] * 2).all() for b in batches)  # columns stay aligned
