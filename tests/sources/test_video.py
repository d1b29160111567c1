"""The video reader (PyAV) on the real dashcam clips: sampling, ids, faults, retries."""

from __future__ import annotations

import numpy as np
import pytest

from alray.sources import available_sources, get_source
from alray.sources.video import decode_video, list_videos, read_video, video_task
from tests.sources.conftest import CUT, VIDEOS, WHITE


def _decode(uri, **task) -> dict[str, np.ndarray]:
    t = {**video_task(str(uri), "clip"), **task}
    parts = list(decode_video(t, input_size=24, channels=3))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_registered():
    assert {"video", "manifest", "image_prefix"} <= set(available_sources())
    assert get_source("video")[0] is list_videos


def test_every_frame_ids_timestamps_and_resize():
    b = _decode(VIDEOS / CUT)
    assert len(b["frame_id"]) == 76 and (b["error"] == "").all()
    assert list(b["frame_id"][:3]) == ["clip:0", "clip:1", "clip:2"]
    assert list(b["timestamp_ms"][:3]) == [0, 40, 80]  # 25 fps
    assert all(len(x) == 24 * 24 * 3 for x in b["image"])
    px = np.frombuffer(b["image"][0], np.uint8)
    assert px.std() > 10  # real picture content, not a blank frame


def test_every_n_and_fps_sampling_keep_decoded_indices():
    full = _decode(VIDEOS / CUT)
    every = _decode(VIDEOS / CUT, every_n=5)
    assert list(every["frame_index"]) == list(range(0, 76, 5))
    fps = _decode(VIDEOS / CUT, sampling="fps", fps=5.0)  # one frame per 200 ms
    assert list(fps["frame_index"]) == list(range(0, 76, 5))
    by_id = dict(zip(full["frame_id"], full["image"], strict=True))
    assert all(by_id[f] == img for f, img in zip(every["frame_id"], every["image"], strict=True))


def test_keyframes_only():
    full = _decode(VIDEOS / WHITE)
    keys = _decode(VIDEOS / WHITE, sampling="keyframes")
    assert 1 <= len(keys["frame_id"]) < len(full["frame_id"]) // 4
    ts = dict(zip(full["frame_index"], full["timestamp_ms"], strict=True))
    assert all(ts[i] == t for i, t in zip(keys["frame_index"], keys["timestamp_ms"], strict=True))


def test_streams_in_batches_and_limit():
    t = {**video_task(str(VIDEOS / WHITE), "w"), "batch_frames": 50}
    sizes = [len(b["frame_id"]) for b in decode_video(t, input_size=16, channels=1)]
    assert sizes == [50, 50, 50, 50, 21]
    t["max_frames"] = 30
    assert sum(len(b["frame_id"]) for b in decode_video(t, input_size=16, channels=1)) == 30


def test_corrupt_video_is_one_failed_record(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    b = _decode(bad)
    assert list(b["frame_id"]) == ["clip:-1"]
    assert "cannot decode" in b["error"][0] and "bad.mp4" in b["error"][0]


def test_truncated_video_keeps_frames_before_the_cut(truncated_video):
    b = _decode(truncated_video)
    ok = b["error"] == ""
    assert 10 < ok.sum() < 221
    assert (~ok).sum() == 1
    assert b["frame_index"][~ok][0] == b["frame_index"][ok].max() + 1
    assert "truncated" in b["error"][~ok][0] or "cannot decode" in b["error"][~ok][0]


def test_transient_read_error_is_retried_without_duplicates(monkeypatch):
    import alray.sources.video as video
    from alray.storage.uri import open_input

    calls = {"n": 0}

    class Flaky:
        """Fails once, half-way through the object, like a dropped S3 connection."""

        def __init__(self, f, fail_at):
            self.f, self.fail_at = f, fail_at

        def read(self, n=-1):
            if self.fail_at is not None and self.f.tell() > self.fail_at:
                self.fail_at = None
                raise OSError("connection reset by peer")
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def flaky_open(uri):
        calls["n"] += 1
        return Flaky(open_input(uri), 900_000 if calls["n"] == 1 else None)

    monkeypatch.setattr(video, "open_input", flaky_open)
    monkeypatch.setattr(video, "_BLOCK", 256 << 10)  # several reads per clip
    b = _decode(VIDEOS / CUT)
    assert calls["n"] == 2
    assert list(b["frame_index"]) == list(range(76)) and (b["error"] == "").all()


def test_listing_folder_and_single_file(video_dir):
    listing = list_videos(str(video_dir))
    assert len(listing.tasks) == 1 and listing.classes == []
    batches = list(read_video(listing.tasks[0], input_size=16, channels=3))
    assert batches[0]["source_id"][0] == CUT and batches[0]["frame_id"][0] == f"{CUT}:0"
    assert len(list_videos(str(video_dir / CUT)).tasks) == 1
    with pytest.raises(FileNotFoundError, match="pool.uri"):
        list_videos(str(video_dir / "nothing-here"))
