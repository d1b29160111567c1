"""Group commit of labels: concurrent submissions equal one-by-one submission."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from alray.labels import LabelItem
from alray.service.catalog import ConsistentStore
from alray.service.intake import COMPACT_EVERY, LabelIntake


def _store(tmp_path, n: int = 60) -> ConsistentStore:
    store = ConsistentStore(str(tmp_path / "store"))
    ids = [f"img:{i}" for i in range(n)]
    store.add_frames(pa.table({
        "frame_id": ids, "source_uri": ["x"] * n, "source_id": ["img"] * n,
        "frame_index": np.arange(n), "timestamp_ms": np.zeros(n, np.int64),
        "split": ["pool"] * n, "status": ["selected"] * n, "label": pa.nulls(n, pa.int64()),
        "selected_round": pa.array([0] * n, pa.int64()),
        "labeled_round": pa.nulls(n, pa.int64()), "embedding": pa.nulls(n, pa.list_(
            pa.float32(), 4)), "score": pa.nulls(n, pa.float32()),
        "error": pa.nulls(n, pa.string()), "image": pa.array([b""] * n, pa.binary()),
        "height": pa.array([1] * n, pa.int32()), "width": pa.array([1] * n, pa.int32()),
        "channels": pa.array([1] * n, pa.int32())}), 4)
    return store


def test_concurrent_submissions_accept_each_key_once(tmp_path):
    store = _store(tmp_path)
    intake = LabelIntake(store)
    # 16 threads post overlapping batches: every frame twice with the same key, and every
    # frame once more with a different label (no overwrite): one accept, one duplicate,
    # one conflict per frame, whatever the interleaving.
    jobs = []
    for t in range(16):
        frames = [f"img:{i}" for i in range(t * 4, t * 4 + 4) if i < 60]
        jobs.append([LabelItem(f, 1, f"k:{f}") for f in frames])
        jobs.append([LabelItem(f, 1, f"k:{f}") for f in frames])
        jobs.append([LabelItem(f, 2) for f in frames])
    results: list = [None] * len(jobs)

    def run(j: int) -> None:
        results[j] = intake.submit(jobs[j], source="t", overwrite=False, num_classes=10)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses: dict[str, list[str]] = {}
    for items, res in zip(jobs, results, strict=True):
        assert [r.frame_id for r in res] == [i.frame_id for i in items]
        for r in res:
            statuses.setdefault(r.frame_id, []).append(r.status)
    for f, s in statuses.items():
        assert sorted(s) in (["accepted", "conflict", "duplicate"],  # label 1 first
                             ["accepted", "conflict", "conflict"]), (f, s)  # label 2 first
    labels = store.read_frames(["label"]).to_pylist()
    assert all(r["label"] in (1, 2) for r in labels)
    accepted = store.label_events("accepted = true")
    assert accepted.num_rows == 60 and len(set(accepted["frame_id"].to_pylist())) == 60


def test_compaction_keeps_every_label(tmp_path):
    store = _store(tmp_path)
    intake = LabelIntake(store)

    def label(i: int) -> None:
        res = intake.submit([LabelItem(f"img:{i}", i % 10, f"c:{i}")], source="t",
                            overwrite=False, num_classes=10)
        assert res[0].status == "accepted"

    for i in range(COMPACT_EVERY):  # the last commit starts a background compaction
        label(i)
    intake.wait_for_compaction(timeout=60)
    assert len(store.frames.to_lance().get_fragments()) <= 3
    keys = {c for t in ("frames", "label_events") for ix in store.db.open_table(t).list_indices()
            for c in ix.columns}
    assert keys == {"frame_id", "idempotency_key"}  # compaction also indexed the lookup keys
    for i in range(COMPACT_EVERY, COMPACT_EVERY + 2):  # writes after compaction still land
        label(i)
    got = store.read_frames(["label", "status"], "status = 'labeled'").to_pylist()
    assert {r["frame_id"]: r["label"] for r in got} == {
        f"img:{i}": i % 10 for i in range(COMPACT_EVERY + 2)}
