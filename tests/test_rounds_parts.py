"""Round-loop parts over a real LanceDB store in a temp folder (no Ray): the balanced seed set,
the near-duplicate record, the selection record and the spent-budget stop."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from alray.pipeline.dedup import (
    DUPLICATES_TABLE,
    collapse,
    duplicates_of_taken,
    near_duplicate_of_taken,
    non_representatives,
    save_duplicates,
)
from alray.pipeline.select import attach_selection, balanced_seed, record_selection
from alray.rounds import RoundController
from alray.storage import Store
from alray.storage.schema import frames_schema
from tests.conftest import small_config


def _frames(store: Store, status: list[str], split: list[str] | None = None) -> np.ndarray:
    n = len(status)
    ids = np.asarray([f"f{i:03d}" for i in range(n)], dtype=object)
    schema = frames_schema(4)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols.update({"frame_id": pa.array(ids.tolist()), "status": pa.array(status),
                 "split": pa.array(split or ["pool"] * n), "source_id": pa.array(["s"] * n),
                 "frame_index": pa.array(np.arange(n)), "timestamp_ms": pa.array(np.arange(n))})
    store.add_frames(pa.table(cols, schema=schema), 4)
    return ids


def test_balanced_seed_takes_n_per_class_at_random(tmp_path):
    store = Store(str(tmp_path / "s"))
    ids = np.asarray([f"f{i:03d}" for i in range(60)], dtype=object)
    labels = np.arange(60) % 4  # 15 per class
    labels[labels == 3] = np.where(np.arange(15) < 1, 3, 2)  # class 3: a single frame
    store.add_ground_truth(ids[:50], labels[:50])  # the last 10 have no ground truth
    taken = np.zeros(60, bool)
    taken[[0, 1]] = True  # already labeled: never chosen
    rows = balanced_seed(store, ids, taken, 3, seed=7)
    got = labels[rows]
    assert np.bincount(got, minlength=4).tolist() == [3, 3, 3, 1]
    assert not taken[rows].any() and (rows < 50).all() and len(set(rows)) == len(rows)
    assert got[:4].tolist() == [0, 1, 2, 3]  # one of each class first, then again
    assert balanced_seed(store, ids, taken, 3, seed=7).tolist() == rows.tolist()
    assert balanced_seed(store, ids, taken, 3, seed=8).tolist() != rows.tolist()
    with pytest.raises(ValueError, match=r"loop\.initial_per_class=3: needs the pool's ground"):
        balanced_seed(Store(str(tmp_path / "empty")), ids, taken, 3, seed=7)


def test_duplicates_of_a_taken_frame_are_withheld_whichever_is_earliest(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    emb = np.repeat(base, 3, axis=0) + 1e-4 * rng.normal(size=(15, 8)).astype(np.float32)
    src = np.repeat(np.array(["a", "b", "c", "d", "e"]), 3)
    rep = collapse(emb, src, np.arange(15), threshold=0.99)
    assert (rep == np.repeat(np.arange(0, 15, 3), 3)).all()  # the earliest of each triple
    taken = np.zeros(15, bool)
    taken[4] = True  # labeled, and not its group's earliest (row 3 is)
    blocked = near_duplicate_of_taken(rep, taken)
    assert np.flatnonzero(blocked).tolist() == [3, 5]  # the representative too

    store = Store(str(tmp_path / "s"))
    ids = np.asarray([f"x{i:02d}" for i in range(15)], dtype=object)
    assert save_duplicates(store, ids, rep, 1) == 10
    rep2 = np.arange(15)
    rep2[1] = 0  # a later round sees another grouping; round 1's record must survive
    assert save_duplicates(store, ids, rep2, 2) == 1
    assert save_duplicates(store, ids, rep2, 2) == 1  # a re-run replaces its own round only
    t = store.db.open_table(DUPLICATES_TABLE).to_arrow()
    assert sorted(set(t["round"].to_pylist())) == [1, 2] and t.num_rows == 11
    assert set(non_representatives(store)) == set(ids[rep != np.arange(15)])
    never = duplicates_of_taken(store, ids[[4]])
    assert set(never) == {"x03", "x05"}  # x04 is taken, its group is not offered


def test_selection_record_is_replaced_per_round_and_attached_to_exports(tmp_path):
    store = Store(str(tmp_path / "s"))
    record_selection(store, 1, np.array(["b", "a"]), strategy="bald",
                     scores=np.array([0.9, 0.4]), score_name="bald", checkpoint_uri="ck0")
    record_selection(store, 2, np.array(["c"]), strategy="random", scores=None,
                     score_name="bald", checkpoint_uri=None)
    record_selection(store, 1, np.array(["d", "b"]), strategy="bald",
                     scores=np.array([0.8, 0.7]), score_name="bald", checkpoint_uri="ck0")
    r1 = store.selections(1).to_pylist()
    assert [(r["frame_id"], r["rank"]) for r in r1] == [("d", 0), ("b", 1)]
    assert r1[0]["score"] == pytest.approx(0.8) and r1[0]["checkpoint_uri"] == "ck0"
    r2 = store.selections(2).to_pylist()
    assert r2[0]["score"] is None and r2[0]["score_name"] is None and r2[0]["strategy"] == "random"
    rows = attach_selection(store, 1, [{"frame_id": "b"}, {"frame_id": "zz"}])
    assert rows[0]["rank"] == 1 and rows[0]["score"] == pytest.approx(0.7)
    assert rows[1]["rank"] is None  # no record: fields present, empty


def test_spent_budget_stops_cleanly_instead_of_a_round_with_k0(tmp_path):
    cfg = small_config(tmp_path, **{"loop.label_budget": 5, "acquisition.batch_size": 3})
    store = Store(cfg.storage.uri)
    # 5 pool frames selected (the budget), only 4 labeled: labels (4) < budget, k would be 0.
    _frames(store, ["labeled"] * 4 + ["selected"] + ["unlabeled"] * 5 + ["labeled"] * 2,
            split=["pool"] * 10 + ["val"] * 2)
    store.put_round({"round": 0, "state": "COMPLETED", "strategy": "random", "batch_size": 5,
                     "metrics": {"labels": 4, "val_accuracy": 0.5}, "diagnostics": {}})
    ctl = RoundController(cfg, store)
    assert ctl._batch_size() == 0
    assert ctl.finished() == "label_budget" and ctl.run() == "label_budget"
    assert [r["round"] for r in store.rounds()] == [0]  # no round was opened
    with pytest.raises(RuntimeError, match=r"loop\.label_budget=5 is spent"):
        ctl.current()


def test_video_groups_by_source_or_by_a_manifest_column(tmp_path):
    from alray.config import ProjectConfig
    from alray.pipeline.select import video_groups

    (tmp_path / "m.csv").write_text("uri,drive_id,camera\nd1/front.mp4,drive-1,front\n"
                                    "d1/left.mp4,drive-1,left\nd2/front.mp4,drive-2,front\n")
    cfg = ProjectConfig().with_overrides(**{"pool.uri": str(tmp_path / "m.csv"),
                                            "pool.format": "manifest"})
    uris = np.array([str(tmp_path / u) for u in ("d1/front.mp4", "d1/left.mp4",
                                                 "d2/front.mp4", "elsewhere.mp4")])
    sid = np.array(["drive-1/front", "drive-1/left", "drive-2/front", "x"])
    assert video_groups(cfg, sid, uris).tolist() == sid.tolist()
    by = cfg.with_overrides(**{"acquisition.video.group_by": "drive_id"})
    # The two cameras of drive 1 form one group; a frame the manifest does not list keeps
    # its source_id.
    assert video_groups(by, sid, uris).tolist() == ["drive-1", "drive-1", "drive-2", "x"]
    with pytest.raises(ValueError, match=r"acquisition\.video\.group_by='lane'.*no such column"):
        video_groups(cfg.with_overrides(**{"acquisition.video.group_by": "lane"}), sid, uris)
    video = cfg.with_overrides(**{"pool.format": "video", "acquisition.video.group_by": "drive_id"})
    with pytest.raises(ValueError, match=r"group_by='drive_id': only 'source_id'"):
        video_groups(video, sid, uris)
