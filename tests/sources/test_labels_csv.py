"""Image folders labeled by any CSV (issue 15, item 5), on the real GTSRB and GTI vehicle sets
and on hand-made files for the edge cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from alray.config import PoolConfig
from alray.sources.image_folder import list_image_folder, read_image_files
from tests.conftest import ROOT

GTSRB = ROOT / "data" / "gtsrb-train-subset-32x32"
VEHICLES = ROOT / "data" / "vehicles-gti-64x64"


def _labels(listing) -> dict[str, int]:
    return {k: int(v) for t in listing.tasks
            for k, v in zip(t["frame_ids"], t["labels"], strict=True)}


def test_gtsrb_semicolon_csv_numeric_classes():
    listing = list_image_folder(str(GTSRB), pool=PoolConfig())
    assert listing.classes == [str(i) for i in range(43)] and listing.labeled == 1307
    got = _labels(listing)
    # ClassId 10 is label 10 (not its position among the names sorted as text, which is 2)
    assert got["Images/00010/00000_00015.ppm"] == 10 and got["Images/00002/00000_00015.ppm"] == 2
    b = read_image_files(listing.tasks[0], input_size=32, channels=3)
    assert (b["error"] == "").all() and set(b["src_height"]) == {32}


def test_vehicles_csv_named_classes_sorted_by_name():
    listing = list_image_folder(str(VEHICLES), pool=PoolConfig())
    assert listing.classes == ["non-vehicle", "vehicle"] and listing.labeled == 673
    got = _labels(listing)
    assert got["vehicles/GTI_Far/image0000.png"] == 1
    assert {v for k, v in got.items() if k.startswith("non-vehicles/")} == {0}


def test_any_csv_columns_delimiter_and_location(tmp_path):
    """A tab-separated file elsewhere, with its own column names and paths relative to it."""
    pool = tmp_path / "pool"
    rows = []
    for i, src in enumerate(sorted((VEHICLES / "vehicles" / "GTI_Far").glob("*.png"))[:4]):
        (pool / "a").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, pool / "a" / f"{i}.png")
        rows.append(f"../pool/a/{i}.png\t{'car' if i % 2 else 'van'}\tx")
    (tmp_path / "meta").mkdir()
    csv = tmp_path / "meta" / "crops.tsv"
    csv.write_text("img\tkind\tnote\n" + "\n".join(rows) + "\n")
    cfg = PoolConfig(labels_file=str(csv), path_column="img", label_column="kind")
    listing = list_image_folder(str(pool), pool=cfg)
    assert listing.classes == ["car", "van"]
    assert _labels(listing) == {"a/0.png": 1, "a/1.png": 0, "a/2.png": 1, "a/3.png": 0}
    fixed = list_image_folder(str(pool), pool=cfg.model_copy(
        update={"classes": ["van", "car", "truck"]}))
    assert fixed.classes == ["van", "car", "truck"]
    assert _labels(fixed) == {"a/0.png": 0, "a/1.png": 1, "a/2.png": 0, "a/3.png": 1}


def test_wrong_labels_files_say_what_they_found_and_wanted(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(next((VEHICLES / "vehicles" / "GTI_Far").glob("*.png")), pool / "x.png")
    (pool / "labels.csv").write_text("name;cls\nx.png;car\n")
    with pytest.raises(ValueError, match=r"found columns \['name', 'cls'\] \(delimiter ';'\); "
                       r"wanted a path column \(pool.path_column: one of \['filename'"):
        list_image_folder(str(pool), pool=PoolConfig())
    with pytest.raises(ValueError, match=r"pool.label_column: 'kind'"):
        list_image_folder(str(pool), pool=PoolConfig(path_column="name", label_column="kind"))
    (pool / "labels.csv").write_text("path,label\nelsewhere/x.png,car\n")
    with pytest.raises(ValueError, match=r"none of its 1 paths .*'elsewhere/x.png'"):
        list_image_folder(str(pool), pool=PoolConfig())
    (pool / "labels.csv").write_text("path,label\nx.png,car\n./x.png,van\n")
    with pytest.raises(ValueError, match=r"listed more than once: \['x.png'\]"):
        list_image_folder(str(pool), pool=PoolConfig())
    (pool / "labels.csv").write_text("path,label\nx.png,car\n")
    with pytest.raises(ValueError, match=r"labels \['car'\] are not in pool.classes"):
        list_image_folder(str(pool), pool=PoolConfig(classes=["a", "b"]))
    with pytest.raises(FileNotFoundError, match="pool.labels_file"):
        list_image_folder(str(pool), pool=PoolConfig(labels_file="missing.csv"))


def test_subfolder_fallback_numeric_folder_names(tmp_path):
    """Without a labels file, each image's first folder is its class: '00010' is class 10."""
    pool = tmp_path / "pool"
    for cls in ("00002", "00010"):
        shutil.copytree(GTSRB / "Images" / cls, pool / cls)
    listing = list_image_folder(str(pool), pool=PoolConfig())
    assert listing.classes == [str(i) for i in range(11)]
    assert set(_labels(listing).values()) == {2, 10}
    assert np.mean([k.startswith("00010/") for k in _labels(listing)]) > 0


def test_root_path_written_in_the_store_is_not_in_the_ids():
    listing = list_image_folder(str(GTSRB), pool=PoolConfig())
    assert listing.root == str(GTSRB)
    assert not any(str(Path(k)).startswith("/") for k in _labels(listing))
