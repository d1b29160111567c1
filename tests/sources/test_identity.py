"""Frame identity (issue 15, items 1-2): ids unique by construction for every source type,
relative to the pool root, stable when the data moves; colliding batches are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from alray.pipeline.ingest import _write, ingest
from alray.sources.idx import list_idx, read_idx_shard
from alray.sources.image_folder import list_image_folder, read_image_files
from alray.sources.image_prefix import list_image_prefix, read_image_items
from alray.sources.manifest import list_manifest, read_manifest_item
from alray.sources.video import list_videos, read_video
from alray.storage import Store
from tests.conftest import MNIST, small_config
from tests.sources.conftest import CUT, VIDEOS

CAMS = ("cam0_000001", "cam1_000001")  # one frame number, two cameras: a multi-camera dump


def _read_all(listing, reader, size=8):
    parts = []
    for task in listing.tasks:
        out = reader(task, input_size=size, channels=3)
        parts += [out] if isinstance(out, dict) else list(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.fixture()
def cams(tmp_path):
    """``cam0_000001.png`` and ``cam1_000001.png`` in one folder, different pixels."""
    d = tmp_path / "dump"
    d.mkdir()
    for i, name in enumerate(CAMS):
        Image.fromarray(np.full((10, 12, 3), 60 * (i + 1), np.uint8)).save(d / f"{name}.png")
    return d


def test_image_folder_and_prefix_ids_are_paths_not_numbers(cams):
    for listing, reader in ((list_image_folder(str(cams)), read_image_files),
                            (list_image_prefix(str(cams)), read_image_items)):
        b = _read_all(listing, reader)
        assert sorted(b["frame_id"]) == ["cam0_000001.png", "cam1_000001.png"]
        assert list(b["frame_index"]) == [1, 1]  # the number is an ordering hint, not the id
        assert b["image"][0] != b["image"][1]


def test_manifest_ids_for_images_and_videos(tmp_path, cams):
    for name in CAMS:
        shutil.copy(VIDEOS / CUT, cams / f"{name}.mp4")
    rows = [{"uri": f"dump/{n}.{ext}", "source_id": "rig-1"} for n in CAMS for ext in ("png", "mp4")]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    listing = list_manifest(str(tmp_path / "m.jsonl"), limit=2)
    assert listing.root == str(tmp_path)
    b = _read_all(listing, read_manifest_item)
    assert sorted(b["frame_id"]) == sorted(
        ["dump/cam0_000001.png", "dump/cam1_000001.png", "dump/cam0_000001.mp4:0",
         "dump/cam0_000001.mp4:1", "dump/cam1_000001.mp4:0", "dump/cam1_000001.mp4:1"])
    assert set(b["source_id"]) == {"rig-1"}  # a shared source_id groups, it does not identify


def test_manifest_refuses_rows_that_would_share_an_id(tmp_path, cams):
    (tmp_path / "m.csv").write_text("uri,label\ndump/cam0_000001.png,a\n"
                                    "dump/./cam0_000001.png,b\ndump/cam1_000001.png,a\n")
    with pytest.raises(ValueError, match=r"cam0_000001\.png.*nothing was ingested"):
        list_manifest(str(tmp_path / "m.csv"))


def test_manifest_rows_outside_the_root_need_pool_root(tmp_path, cams):
    (tmp_path / "lists").mkdir()
    m = tmp_path / "lists" / "m.csv"
    m.write_text(f"uri\n{cams / 'cam0_000001.png'}\n../dump/cam1_000001.png\n")
    with pytest.raises(ValueError, match=r"2 row\(s\) lie outside the pool root.*pool.root"):
        list_manifest(str(m))

    class Pool:
        root = str(tmp_path)

    b = _read_all(list_manifest(str(m), pool=Pool()), read_manifest_item)
    assert sorted(b["frame_id"]) == ["dump/cam0_000001.png", "dump/cam1_000001.png"]


def test_video_ids_are_relative_path_and_frame_index(tmp_path):
    d = tmp_path / "videos"
    (d / "front").mkdir(parents=True)
    for name in CAMS:
        shutil.copy(VIDEOS / CUT, d / f"{name}.mp4")
    shutil.copy(VIDEOS / CUT, d / "front" / f"{CAMS[0]}.mp4")
    listing = list_videos(str(d), limit=2)
    ids = np.concatenate([b["frame_id"] for t in listing.tasks
                          for b in read_video(t, input_size=8, channels=3)])
    assert sorted(ids) == sorted(f"{p}:{i}" for p in
                                 (f"{CAMS[0]}.mp4", f"{CAMS[1]}.mp4", f"front/{CAMS[0]}.mp4")
                                 for i in (0, 1))


def test_idx_ids_are_file_and_record():
    b = read_idx_shard(list_idx(str(MNIST), limit=3).tasks[0], input_size=28, channels=1)
    assert list(b["frame_id"]) == [f"t10k-images-idx3-ubyte.gz:{i}" for i in range(3)]


def test_a_batch_with_one_id_twice_is_refused(tmp_path):
    cfg = small_config(tmp_path)
    store = Store(cfg.storage.uri)
    n = 3
    batch = {"frame_id": np.array(["a.png", "b.png", "a.png"], dtype=object),
             "source_uri": np.array(["x"] * n, dtype=object),
             "source_id": np.array(["."] * n, dtype=object),
             "frame_index": np.zeros(n, np.int64), "timestamp_ms": np.zeros(n, np.int64),
             "error": np.array([""] * n, dtype=object), "image": np.array([b""] * n, dtype=object),
             "height": np.zeros(n, np.int32), "width": np.zeros(n, np.int32),
             "channels": np.zeros(n, np.int32), "gt_label": np.full(n, -1)}
    with pytest.raises(ValueError, match=r"\['a.png'\]"):
        _write(store, batch, cfg, 4, 0, 0)
    assert not store.has_frames()


def _ids_splits(store: Store) -> dict[str, str]:
    t = store.read_frames(["split"])
    return dict(zip(t["frame_id"].to_pylist(), t["split"].to_pylist(), strict=True))


def test_moved_or_symlinked_pool_keeps_ids_and_splits(ray_session, tmp_path, image_pool):
    over = {"pool.format": "image_folder", "pool.limit": None, "model.input_size": 16,
            "model.in_channels": 3, "pool.val_fraction": 0.3, "pool.test_fraction": 0.3}
    cfg = small_config(tmp_path, **{"pool.uri": str(image_pool), **over})
    store = Store(cfg.storage.uri)
    first = ingest(cfg, store)
    assert first.frames_added == 25 and first.labeled == 25
    assert any("resized to 16x16" in n and "from 24x20 (24 frames" in n for n in first.notices)
    assert not any("no labels" in n for n in first.notices)
    before = _ids_splits(store)
    assert "car/00.png" in before and len(set(before.values())) == 3
    link = tmp_path / "mnt" / "pool"
    link.parent.mkdir()
    link.symlink_to(image_pool)  # the same images on another mount point
    again = ingest(cfg.with_overrides(**{"pool.uri": str(link)}), store)
    assert (again.frames_added, again.frames_present) == (0, 25)
    assert any("pool root moved" in n for n in again.notices)
    assert store.get_meta("pool")["root"] == str(link)
    moved = shutil.move(str(image_pool), str(tmp_path / "elsewhere"))
    other = small_config(tmp_path / "b", **{"pool.uri": moved, **over})
    fresh = Store(other.storage.uri)
    ingest(other, fresh)
    assert _ids_splits(fresh) == before  # a new project on the moved data: same ids, splits


def test_store_with_the_old_id_scheme_is_not_silently_duplicated(ray_session, tmp_path, cams):
    cfg = small_config(tmp_path, **{"pool.uri": str(cams), "pool.format": "image_prefix",
                                    "model.input_size": 16, "model.in_channels": 3})
    store = Store(cfg.storage.uri)
    n = 2  # what an earlier alray wrote: '<folder>:<number from the name>', no pool record
    store.add_frames(pa.table({
        "frame_id": ["dump:1", "dump:1"], "source_uri": [str(cams / f"{c}.png") for c in CAMS],
        "source_id": ["dump"] * n, "frame_index": [1, 1], "timestamp_ms": [0, 0],
        "split": ["pool"] * n, "status": ["unlabeled"] * n, "label": pa.nulls(n, pa.int64()),
        "selected_round": pa.nulls(n, pa.int64()), "labeled_round": pa.nulls(n, pa.int64()),
        "embedding": pa.nulls(n, pa.list_(pa.float32(), 4)), "score": pa.nulls(n, pa.float32()),
        "error": pa.nulls(n, pa.string()), "image": [b""] * n, "height": [0, 0],
        "width": [0, 0], "channels": [0, 0]}), 4)
    with pytest.raises(ValueError, match="earlier frame-id scheme.*new store"):
        ingest(cfg, store)
    assert store.count_frames() == 2  # nothing added, nothing lost
