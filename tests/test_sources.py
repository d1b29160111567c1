"""Pool readers and ingestion through real Ray Data into LanceDB."""

import gzip

import numpy as np
import pytest

from alray.pipeline.ingest import assign_splits, ingest
from alray.sources.idx import list_idx, read_idx_shard
from alray.sources.image_folder import list_image_folder, read_image_files
from alray.storage import Store
from tests.conftest import MNIST, small_config


def test_idx_gz_reads_real_digits():
    listing = list_idx(str(MNIST), limit=5)
    b = read_idx_shard(listing.tasks[0], input_size=28, channels=1)
    assert list(b["gt_label"]) == [7, 2, 1, 0, 4]  # the known first MNIST test labels
    px = np.frombuffer(b["image"][0], np.uint8)
    assert px.size == 784 and px.max() == 255
    assert b["frame_id"][0] == "t10k-images-idx3-ubyte.gz:0"
    assert all(e == "" for e in b["error"])


def test_idx_raw_equals_gz(mnist_raw):
    a = read_idx_shard(list_idx(str(MNIST), limit=50).tasks[0], input_size=28, channels=1)
    b = read_idx_shard(list_idx(str(mnist_raw), limit=50).tasks[0], input_size=28, channels=1)
    assert list(a["image"]) == list(b["image"]) and list(a["gt_label"]) == list(b["gt_label"])


def test_idx_resize_and_channels():
    b = read_idx_shard(list_idx(str(MNIST), limit=3).tasks[0], input_size=32, channels=3)
    assert len(b["image"][0]) == 32 * 32 * 3 and int(b["channels"][0]) == 3


def test_truncated_idx_marks_missing_records_failed(tmp_path):
    raw = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    cut = 16 + 784 * 10 + 100  # 10 whole records and part of the 11th
    d = tmp_path / "trunc"
    d.mkdir()
    (d / "t10k-images-idx3-ubyte").write_bytes(raw[:cut])
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    listing = list_idx(str(d), limit=12)
    b = read_idx_shard(listing.tasks[0], input_size=28, channels=1)
    errors = list(b["error"])
    assert errors[:10] == [""] * 10
    assert "truncated IDX record 10" in errors[10] and "record 11" in errors[11]


def test_idx_bad_header_names_the_file(tmp_path):
    (tmp_path / "x-images-idx3-ubyte").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="x-images-idx3-ubyte"):
        list_idx(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pool.uri"):
        list_idx(str(tmp_path / "missing"))


def test_image_folder_subfolders_and_corrupt(image_pool):
    listing = list_image_folder(str(image_pool))
    assert listing.classes == ["car", "sign", "truck"] and listing.root == str(image_pool)
    b = read_image_files(listing.tasks[0], input_size=16, channels=3)
    errs = dict(zip(b["frame_id"], b["error"], strict=True))
    bad = [f for f, e in errs.items() if e]
    assert bad == ["sign/broken.png"]  # the path under the pool root is the id
    assert set(b["source_id"]) == {"car", "sign", "truck"}
    assert list(b["src_height"][:2]) == [20, 20] and list(b["src_width"][:2]) == [24, 24]
    assert "cannot decode" in errs[bad[0]] and "broken.png" in errs[bad[0]]
    assert len(b["frame_id"]) == 25
    ok = b["error"] == ""
    assert all(len(x) == 16 * 16 * 3 for x in b["image"][ok])


def test_image_folder_labels_csv(tmp_path, image_pool):
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["filename,label"]
    for i, p in enumerate(sorted(image_pool.glob("*/0*.png"))):
        (flat / f"img{i}.png").write_bytes(p.read_bytes())
        rows.append(f"img{i}.png,{p.parent.name}")
    (flat / "labels.csv").write_text("\n".join(rows))
    listing = list_image_folder(str(flat))
    assert listing.classes == ["car", "sign", "truck"]
    b = read_image_files(listing.tasks[0], input_size=8, channels=1)
    assert sorted(set(b["gt_label"].tolist())) == [0, 1, 2]
    (flat / "labels.csv").write_text("name,cls\nimg0.png,car\n")
    with pytest.raises(ValueError, match=r"found columns \['name', 'cls'\].*pool.path_column"):
        list_image_folder(str(flat))


def test_splits_are_stable_proportional_and_batch_independent():
    ids = np.array([f"cam{i % 2}/{i:06d}.png" for i in range(100_000)], dtype=object)
    s1 = assign_splits(ids, val=0.1, test=0.2, seed=0)
    assert np.array_equal(s1, assign_splits(ids, val=0.1, test=0.2, seed=0))
    assert abs((s1 == "val").mean() - 0.1) < 0.01 and abs((s1 == "test").mean() - 0.2) < 0.01
    assert not np.array_equal(s1, assign_splits(ids, val=0.1, test=0.2, seed=1))
    # A frame's split depends on its id only, not on the batch it is written in.
    part = assign_splits(ids[[7, 70_000, 3]], val=0.1, test=0.2, seed=0)
    assert list(part) == list(s1[[7, 70_000, 3]])
    mixed = np.array(["", "é/ü.png", "a" * 300], dtype=object)
    assert len(assign_splits(mixed, val=0.3, test=0.3, seed=0)) == 3


def test_ingest_idx_idempotent(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"pool.limit": 600})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert (s.frames_added, s.frames_present, s.failed) == (600, 0, 0)
    again = ingest(cfg, store)
    assert (again.frames_added, again.frames_present) == (0, 600)
    assert store.count_frames() == 600
    splits = {k: store.count_frames(f"split = '{k}'") for k in ("pool", "val", "test")}
    assert sum(splits.values()) == 600 and splits["val"] > 0 and splits["test"] > 0
    # Ground truth lives apart from the pool state: frames carry no label after ingest.
    assert store.count_frames("label IS NOT NULL") == 0
    assert store.ground_truth(["t10k-images-idx3-ubyte.gz:0"]) == {"t10k-images-idx3-ubyte.gz:0": 7}


def test_ingest_image_folder_with_corrupt_file(ray_session, tmp_path, image_pool):
    cfg = small_config(tmp_path, **{"pool.uri": str(image_pool), "pool.format": "image_folder",
                                    "pool.limit": None, "model.input_size": 16,
                                    "model.in_channels": 3})
    store = Store(cfg.storage.uri)
    s = ingest(cfg, store)
    assert s.frames_added == 25 and s.failed == 1
    assert "broken.png" in s.failures[0]["frame_id"]
    row = store.read_frames(["status", "error", "split"], "status = 'failed'").to_pylist()
    assert len(row) == 1 and "cannot decode" in row[0]["error"] and row[0]["split"] == "pool"
    assert store.get_meta("classes") == ["car", "sign", "truck"]
    assert store.get_meta("pool")["root"] == str(image_pool)
