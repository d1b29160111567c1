"""Label intake: validate a batch of labels, log every submission, store the valid ones.

Shared by the simulated annotator and the HTTP service. Idempotent: an item with an
idempotency key seen before is accepted once (the key reused for another frame or label is a
conflict); the same label for an already-labeled frame is a no-op; a different one is a
conflict unless ``overwrite``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from alray.sources.classes import MAX_NUMERIC_CLASS, class_index
from alray.storage import Store, sql_list
from alray.storage.schema import FrameStatus

__all__ = ["MAX_NUMERIC_CLASS", "LabelItem", "LabelResult", "class_index", "resolve_label",
           "submit_labels"]


@dataclass(frozen=True)
class LabelItem:
    frame_id: str
    label: int
    idempotency_key: str | None = None


@dataclass(frozen=True)
class LabelResult:
    frame_id: str
    status: str  # accepted | duplicate | conflict | rejected
    reason: str | None = None


def submit_labels(store: Store, items: list[LabelItem], *, source: str,
                  overwrite: bool = False, num_classes: int | None = None) -> list[LabelResult]:
    """Store labels for selected frames; return one result per item, in order."""
    if not items:
        return []
    ids = list(dict.fromkeys(i.frame_id for i in items))
    keys = [i.idempotency_key for i in items if i.idempotency_key]
    with ThreadPoolExecutor(max_workers=1) as pool:  # the two lookups overlap (I/O in Rust)
        seen_keys = pool.submit(_accepted_keys, store, keys)
        rows = store.read_frames(["split", "status", "label", "selected_round"],
                                 f"frame_id IN {sql_list(ids)}").to_pylist()
        seen = seen_keys.result()
    frames = {r["frame_id"]: r for r in rows}
    results, events, updates = [], [], {}
    for it in items:  # a submission's items, not pool items: bounded by the request size
        f = frames.get(it.frame_id)
        res = _judge(it, f, seen, updates, overwrite, num_classes)
        results.append(res)
        logged = res.status == "accepted" and it.idempotency_key in seen  # re-applied
        if res.status == "accepted":
            updates[it.frame_id] = (it.label, f["selected_round"])
            if it.idempotency_key:
                seen[it.idempotency_key] = (it.frame_id, it.label)
        if res.status != "duplicate" and not logged:
            events.append({"frame_id": it.frame_id, "label": int(it.label),
                           "idempotency_key": it.idempotency_key, "source": source,
                           "round": f["selected_round"] if f else None,
                           "accepted": res.status == "accepted", "reason": res.reason})
    store.append_label_events(events)  # the audit log is written before the frames change
    if updates:
        fid = list(updates)
        store.update_frames(pa.table({
            "frame_id": pa.array(fid, pa.string()),
            "status": pa.array([FrameStatus.LABELED.value] * len(fid), pa.string()),
            "label": pa.array([updates[f][0] for f in fid], pa.int64()),
            "labeled_round": pa.array(np.array([updates[f][1] for f in fid], dtype=np.int64)),
        }))
    return results


def _accepted_keys(store: Store, keys: list[str]) -> dict[str, tuple[str, int]]:
    """The idempotency keys among ``keys`` that an earlier submission got accepted, with the
    ``(frame_id, label)`` each was accepted for."""
    if not keys:
        return {}
    ev = store.label_events(f"idempotency_key IN {sql_list(keys)} AND accepted = true")
    return dict(zip(ev["idempotency_key"].to_pylist(),
                    zip(ev["frame_id"].to_pylist(), ev["label"].to_pylist(), strict=True),
                    strict=True))


def _judge(it: LabelItem, f: dict | None, seen: dict, pending: dict, overwrite: bool,
           num_classes: int | None) -> LabelResult:
    if it.idempotency_key and it.idempotency_key in seen:
        frame_id, label = seen[it.idempotency_key]
        if (frame_id, label) != (it.frame_id, it.label):
            return LabelResult(it.frame_id, "conflict",
                               f"idempotency_key {it.idempotency_key!r} was already used for "
                               f"another payload (frame_id {frame_id!r}, label {label}); "
                               "send a new key")
        if f is None or f["status"] != FrameStatus.SELECTED or it.frame_id in pending:
            return LabelResult(it.frame_id, "duplicate", "idempotency_key already accepted")
        # accepted and logged, but the frame never got the label (the writer died between
        # the audit log and the frames commit): apply it now
    if f is None:
        return LabelResult(it.frame_id, "rejected", "unknown frame_id")
    if not isinstance(it.label, int | np.integer) or it.label < 0 or (
            num_classes is not None and it.label >= num_classes):
        return LabelResult(it.frame_id, "rejected",
                           f"label {it.label!r} out of range [0, {num_classes})")
    if f["split"] != "pool":
        return LabelResult(it.frame_id, "rejected", f"frame is in the {f['split']!r} split")
    if f["status"] == FrameStatus.FAILED:
        return LabelResult(it.frame_id, "rejected", "frame failed to decode")
    if f["status"] == FrameStatus.UNLABELED:
        return LabelResult(it.frame_id, "rejected", "frame was never selected")
    current = pending[it.frame_id][0] if it.frame_id in pending else f["label"]
    if f["status"] == FrameStatus.LABELED or it.frame_id in pending:
        if current == it.label:
            return LabelResult(it.frame_id, "duplicate", "frame already has this label")
        if not overwrite:
            return LabelResult(it.frame_id, "conflict",
                               f"frame already labeled {current}; pass overwrite=true to replace")
    return LabelResult(it.frame_id, "accepted")


def resolve_label(label: int | str, index: dict[str, int], num_classes: int | None
                  ) -> tuple[int, None] | tuple[None, str]:
    """``(class index, None)``, or ``(None, why it is rejected)``: a class name, then a string
    of ASCII digits (the request schema refused other digits), then an integer, range-checked.

    Used by the HTTP service and the CLI's local ``alray labels push`` alike.

    Args:
        label: what the annotator sent.
        index: class name -> class index.
        num_classes: labels must lie in ``[0, num_classes)`` (None: only ``>= 0``).
    """
    if isinstance(label, str):
        if label in index:
            return index[label], None
        if not (label.isascii() and label.isdigit()):
            names = ", ".join(index) or "none ingested yet"
            return None, f"label {label!r} is not a class of this project ({names})"
    value = int(label)
    if value < 0 or (num_classes is not None and value >= num_classes):
        return None, f"label {label!r} out of range [0, {num_classes})"
    return value, None

