"""Ingest from a real S3-compatible server over loopback (``s3://`` through pyarrow.fs)."""

from __future__ import annotations

import os

import pytest

from alray.pipeline.ingest import ingest
from alray.storage import Store
from tests.s3.conftest import BUCKET
from tests.sources.conftest import CUT, WHITE, video_config


def test_video_prefix_from_s3_idempotent_with_corrupt_file(ray_session, tmp_path, s3_env):
    assert s3_env.kind in ("seaweedfs", "moto")
    cfg = video_config(tmp_path, f"s3://{BUCKET}/videos", **{"pool.every_n": 4})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert (s.sources, s.frames_added, s.failed) == (3, 19 + 56 + 1, 1)
    assert s.failures[0]["frame_id"] == "broken.mkv:-1"
    assert "cannot decode" in s.failures[0]["error"] and "s3://dashcam/videos/broken.mkv" in s.failures[0]["error"]
    row = store.read_frames(["source_uri", "timestamp_ms"], f"frame_id = '{WHITE}:8'")
    assert row["source_uri"][0].as_py() == f"s3://{BUCKET}/videos/{WHITE}"
    assert row["timestamp_ms"][0].as_py() == 320
    again = ingest(cfg, store)
    assert (again.frames_added, again.frames_present) == (0, 76)
    ids = store.read_frames([])["frame_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 76


def test_manifest_and_image_prefix_from_s3(ray_session, tmp_path, s3_env):
    cfg = video_config(tmp_path, f"s3://{BUCKET}/manifest.jsonl", **{
        "pool.format": "manifest", "pool.sampling": "keyframes", "model.num_classes": None})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert s.failed == 0 and s.classes == ["highway", "lanes"] and s.sources == 2
    ids = store.read_frames([])["frame_id"].to_pylist()
    # ids: paths relative to the manifest's prefix (s3://dashcam), never the bucket URI
    img = "frames/drive-1/front/frame_00003.png"
    assert f"videos/{WHITE}:0" in ids and img in ids
    gt = store.ground_truth(ids)
    assert gt[f"videos/{WHITE}:0"] == 1 and gt[img] == 0
    cfg2 = video_config(tmp_path / "p", f"s3://{BUCKET}/frames", **{"pool.format": "image_prefix"})
    s2 = ingest(cfg2, Store(cfg2.storage.uri))
    assert (s2.frames_added, s2.failed, s2.sources) == (4, 0, 1)


def _endpoint_config(tmp_path, s3_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    return video_config(tmp_path, f"s3://{BUCKET}/videos/{CUT}", **{
        "pool.s3_endpoint_url": s3_env.endpoint, "pool.sampling": "fps", "pool.fps": 1.0})


def test_endpoint_from_config(ray_session, tmp_path, s3_env, monkeypatch):
    cfg = _endpoint_config(tmp_path, s3_env, monkeypatch)
    s = ingest(cfg, Store(cfg.storage.uri))
    assert (s.frames_added, s.failed) == (4, 0)  # t = 0, 1, 2, 3 s of a 3.04 s clip


@pytest.mark.skipif(os.environ.get("ALRAY_TEST_S3") == "moto",
                    reason="ALRAY_TEST_S3=moto was asked for, and moto does not check signatures")
def test_signatures_enforced(ray_session, tmp_path, s3_env, monkeypatch):
    assert s3_env.kind == "seaweedfs"
    cfg = _endpoint_config(tmp_path, s3_env, monkeypatch)
    # The right key is accepted, then a wrong secret is refused by the server.
    assert ingest(cfg, Store(cfg.storage.uri)).frames_added == 4
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    bad = cfg.with_overrides(**{"pool.uri": f"s3://{BUCKET}/videos"})
    with pytest.raises(FileNotFoundError, match="pool.uri"):
        ingest(bad, Store(str(tmp_path / "bad-store")))
