"""Manifest (Parquet/CSV/JSONL) and image-prefix readers on real files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from alray.sources import get_source
from alray.sources.image_prefix import list_image_prefix, read_image_items
from alray.sources.manifest import list_manifest, read_manifest_item
from tests.sources.conftest import CUT, VIDEOS, WHITE


@pytest.fixture()
def frames_dir(tmp_path):
    """Extracted-frame layout: drive/camera/frame_N.png, plus one corrupt file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "frames"
    for drive in ("d1", "d2"):
        (root / drive / "front").mkdir(parents=True)
        for i in (0, 5, 10):
            Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(
                root / drive / "front" / f"frame_{i:06d}.png")
    (root / "d2" / "front" / "frame_000099.png").write_bytes(b"not a png")
    return root


def _read_all(listing, reader, size=16):
    parts = []
    for task in listing.tasks:
        out = reader(task, input_size=size, channels=3)
        parts += [out] if isinstance(out, dict) else list(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_image_prefix_ids_are_relative_paths(frames_dir):
    listing = list_image_prefix(str(frames_dir))
    b = _read_all(listing, read_image_items)
    ids = set(b["frame_id"])
    assert {"d1/front/frame_000000.png", "d1/front/frame_000010.png",
            "d2/front/frame_000099.png"} <= ids and len(ids) == 7
    assert set(b["source_id"]) == {"d1/front", "d2/front"}
    got = dict(zip(b["frame_id"], b["frame_index"], strict=True))
    assert got["d1/front/frame_000005.png"] == 5  # an ordering hint from the name
    bad = b["error"] != ""
    assert list(b["frame_id"][bad]) == ["d2/front/frame_000099.png"]
    assert "cannot decode" in b["error"][bad][0]
    assert all(len(x) == 16 * 16 * 3 for x in b["image"][~bad])
    assert get_source("image_prefix")[1] is read_image_items


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_manifest_videos_images_metadata_labels(tmp_path, frames_dir, kind):
    shutil.copy(VIDEOS / CUT, tmp_path / CUT)
    shutil.copy(VIDEOS / WHITE, tmp_path / WHITE)
    rows = [
        {"uri": CUT, "drive_id": "drive-7", "camera": "front", "label": "highway"},
        {"uri": str(tmp_path / WHITE), "source_id": "white", "label": "lanes"},
        {"uri": "frames/d1/front/frame_000005.png", "timestamp_ms": 1234, "label": "lanes"},
        {"uri": "frames/d1/front/frame_000010.png", "drive_id": "d1", "camera": "front",
         "frame_index": 777},
    ]
    cols = ["uri", "source_id", "drive_id", "camera", "frame_index", "timestamp_ms", "label"]
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    path = tmp_path / f"manifest.{kind}"
    if kind == "parquet":
        pq.write_table(table, path)
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    listing = list_manifest(str(path), pool=None, limit=20)
    assert listing.classes == ["highway", "lanes"]
    b = _read_all(listing, read_manifest_item)
    got = dict(zip(b["frame_id"], b["gt_label"], strict=True))
    assert got[f"{CUT}:0"] == 0 and got[f"{WHITE}:19"] == 1  # ids: paths under the manifest's
    assert sum(f.startswith(f"{WHITE}:") for f in got) == 20  # limit: 20 frames per video
    sources = dict(zip(b["frame_id"], b["source_id"], strict=True))
    assert sources[f"{CUT}:0"] == f"drive-7/front/{CUT}" and sources[f"{WHITE}:0"] == "white"
    img = b["source_id"] == "frames/d1/front"
    assert list(b["frame_index"][img]) == [5] and list(b["timestamp_ms"][img]) == [1234]
    assert got["frames/d1/front/frame_000010.png"] == -1  # no label given
    assert sources["frames/d1/front/frame_000010.png"] == "d1/front"
    assert (b["error"] == "").all()


def test_manifest_errors_name_the_problem(tmp_path):
    (tmp_path / "m.csv").write_text("path\nx.mp4\n")
    with pytest.raises(ValueError, match="'uri' column"):
        list_manifest(str(tmp_path / "m.csv"))
    (tmp_path / "m2.csv").write_text("uri\nnotes.txt\n")
    with pytest.raises(ValueError, match="row 0"):
        list_manifest(str(tmp_path / "m2.csv"))
    with pytest.raises(FileNotFoundError, match="manifest"):
        list_manifest(str(tmp_path / "missing.parquet"))
    with pytest.raises(ValueError, match="must end in"):
        list_manifest(str(tmp_path / "m.txt"))
