"""Label intake against a real LanceDB store (no Ray needed: frames written directly)."""

import numpy as np
import pyarrow as pa
import pytest

from alray.labels import LabelItem, submit_labels
from alray.pipeline.select import mark_selected
from alray.storage import Store


@pytest.fixture()
def store(tmp_path):
    st = Store(str(tmp_path / "store"))
    n = 6
    st.add_frames(pa.table({
        "frame_id": [f"v:{i}" for i in range(n)], "source_uri": ["v"] * n, "source_id": ["v"] * n,
        "frame_index": np.arange(n), "timestamp_ms": np.zeros(n, np.int64),
        "split": ["pool"] * 5 + ["test"], "status": ["unlabeled"] * n,
        "label": pa.nulls(n, pa.int64()), "selected_round": pa.nulls(n, pa.int64()),
        "labeled_round": pa.nulls(n, pa.int64()),
        "embedding": pa.nulls(n, pa.list_(pa.float32(), 4)), "score": pa.nulls(n, pa.float32()),
        "error": pa.nulls(n, pa.string()), "image": [b""] * n,
        "height": np.zeros(n, np.int32), "width": np.zeros(n, np.int32),
        "channels": np.zeros(n, np.int32)}), embedding_dim=4)
    mark_selected(st, np.array(["v:0", "v:1", "v:2"]), 1)
    return st


def statuses(results):
    return [r.status for r in results]


def test_partial_batch_keeps_the_valid_items(store):
    res = submit_labels(store, [
        LabelItem("v:0", 1, "k0"), LabelItem("nope", 1), LabelItem("v:3", 1),
        LabelItem("v:5", 1), LabelItem("v:1", 99),
    ], source="test", num_classes=10)
    assert statuses(res) == ["accepted", "rejected", "rejected", "rejected", "rejected"]
    assert [r.reason for r in res[1:]] == [
        "unknown frame_id", "frame was never selected", "frame is in the 'test' split",
        "label 99 out of range [0, 10)"]
    row = store.read_frames(["status", "label", "labeled_round"], "frame_id = 'v:0'").to_pylist()
    assert row[0] | {} == {"frame_id": "v:0", "status": "labeled", "label": 1, "labeled_round": 1}
    assert store.count_frames("status = 'labeled'") == 1


def test_idempotent_retry_and_conflicts(store):
    submit_labels(store, [LabelItem("v:0", 1, "k0")], source="t")
    again = submit_labels(store, [LabelItem("v:0", 1, "k0")], source="t")
    assert statuses(again) == ["duplicate"]
    same = submit_labels(store, [LabelItem("v:0", 1)], source="t")
    assert statuses(same) == ["duplicate"]
    other = submit_labels(store, [LabelItem("v:0", 2)], source="t")
    assert statuses(other) == ["conflict"]
    assert store.read_frames(["label"], "frame_id = 'v:0'")["label"].to_pylist() == [1]
    over = submit_labels(store, [LabelItem("v:0", 2)], source="t", overwrite=True)
    assert statuses(over) == ["accepted"]
    assert store.read_frames(["label"], "frame_id = 'v:0'")["label"].to_pylist() == [2]
    ev = store.label_events()
    # Every submission is logged except exact retries; accepted ones count once.
    assert ev.num_rows == 3 and sum(ev["accepted"].to_pylist()) == 2


def test_same_frame_twice_in_one_batch(store):
    res = submit_labels(store, [LabelItem("v:2", 3), LabelItem("v:2", 4)], source="t")
    assert statuses(res) == ["accepted", "conflict"]


def test_reselecting_is_refused_and_changes_nothing(store):
    with pytest.raises(RuntimeError, match="refusing to re-select"):
        mark_selected(store, np.array(["v:3", "v:0"]), 2)
    assert store.count_frames("selected_round = 2") == 0


# ---- class order (issue 15, item 4) ------------------------------------------------------
def test_numeric_classes_are_their_own_index():
    from alray.labels import class_index

    classes, codes = class_index(["10", "2", "", None, "0", "00010"])
    assert classes == [str(i) for i in range(11)]  # class "10" is 10, not 2 (text order)
    assert codes.tolist() == [10, 2, -1, -1, 0, 10]


def test_named_classes_sorted_by_name_and_explicit_list_wins():
    from alray.labels import class_index

    classes, codes = class_index(["truck", "car", "bus", "car", "10"])
    assert classes == ["10", "bus", "car", "truck"] and codes.tolist() == [3, 2, 1, 2, 0]
    classes, codes = class_index(["truck", "car", ""], ["truck", "car", "bus"])
    assert classes == ["truck", "car", "bus"] and codes.tolist() == [0, 1, -1]
    with pytest.raises(ValueError, match=r"labels \['van'\] are not in pool.classes"):
        class_index(["van", "car"], ["car", "bus"])
    with pytest.raises(ValueError, match=r"pool.classes repeats \['car'\]"):
        class_index(["car"], ["car", "car"])
    huge, _ = class_index(["1999", "2024"])  # years are names, not 2,025 class slots
    assert huge == ["1999", "2024"]
