"""A real S3-compatible server on 127.0.0.1 (SeaweedFS, SigV4 enforced) holding the clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.s3server import start_s3_server
from tests.sources.conftest import CUT, VIDEOS, WHITE

BUCKET = "dashcam"


@pytest.fixture(scope="session")
def s3_server():
    """The server, with ``s3://dashcam/videos/{CUT,WHITE,broken.mkv}``, extracted frames under
    ``s3://dashcam/frames/drive-1/front/`` and a manifest ``s3://dashcam/manifest.jsonl``."""
    import io

    from PIL import Image

    server = start_s3_server()
    rng = np.random.default_rng(0)
    frames = {}
    for i in range(0, 12, 3):
        buf = io.BytesIO()
        Image.fromarray((rng.random((18, 26, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        frames[f"frames/drive-1/front/frame_{i:05d}.png"] = buf.getvalue()
    manifest = [
        {"uri": f"videos/{WHITE}", "drive_id": "drive-1", "camera": "front", "label": "lanes"},
        {"uri": "frames/drive-1/front/frame_00003.png", "label": "highway", "timestamp_ms": 120},
    ]
    server.upload(BUCKET, {
        f"videos/{CUT}": VIDEOS / CUT, f"videos/{WHITE}": VIDEOS / WHITE,
        "videos/broken.mkv": (VIDEOS / CUT).read_bytes()[:3000],
        "manifest.jsonl": "\n".join(json.dumps(r) for r in manifest).encode(),
        **frames,
    })
    yield server
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    """Point this process's AWS environment at the server (workers get it from the ingest)."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    return s3_server
