"""The command line's local mode: rounds, selection exports and label pushes on a project's own
store, without the HTTP service (``alray rounds show CONFIG``, ``alray selection export
CONFIG``, ``alray labels push CONFIG FILE``).

Exports render through :mod:`alray.exports` and labels go through
:func:`alray.labels.resolve_label` and :func:`alray.labels.submit_labels`, as in the service:
the same formats, the same validation, the same idempotent ``label_events`` log.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray.config import ProjectConfig
from alray.exports import (
    SELECTION_COLUMNS,
    SELECTION_FINAL,
    coco_document,
    export_items,
    is_image_uri,
    presign_s3,
)
from alray.storage import Store
from alray.storage.uri import is_remote

__all__ = ["export_selection", "open_store", "push_labels", "read_label_file", "round_counts",
           "round_detail"]

#: Lifetime of presigned URLs of ``s3://`` images in a local export.
URL_EXPIRY_S = 7 * 24 * 3600
_LABEL_KEYS = ("frame_id", "label", "idempotency_key")


def open_store(cfg: ProjectConfig, store_uri: str | None = None) -> Store:
    """The project's store (``store_uri`` overrides ``storage.uri``), which must hold frames.

    Raises:
        FileNotFoundError: nothing was ingested there yet.
    """
    uri = store_uri or cfg.storage.uri
    if not is_remote(uri) and not Path(uri.removeprefix("file://")).is_dir():
        raise FileNotFoundError(f"storage.uri={uri!r}: no store there yet; run `alray run "
                                "CONFIG` (or `alray ingest CONFIG`) first")
    store = Store(uri)
    if not store.has_frames():
        raise FileNotFoundError(f"storage.uri={uri!r}: the store has no frames yet; run "
                                "`alray run CONFIG` (or `alray ingest CONFIG`) first")
    return store


def round_counts(store: Store) -> dict[int, tuple[int, int]]:
    """Per round: (frames selected in it, of which labeled)."""
    t = store.read_frames(["selected_round", "status"], "selected_round IS NOT NULL")
    t = t.append_column("labeled", pc.cast(pc.equal(t["status"], "labeled"), pa.int64()))
    agg = t.group_by("selected_round").aggregate([("labeled", "count"), ("labeled", "sum")])
    return {int(n): (int(c), int(s)) for n, c, s in zip(
        agg["selected_round"].to_pylist(), agg["labeled_count"].to_pylist(),
        agg["labeled_sum"].to_pylist(), strict=True)}


def round_detail(rec: dict[str, Any], counts: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """A round record shaped like the service's ``GET .../rounds/{n}`` answer."""
    diag = dict(rec["diagnostics"])
    timings = diag.pop("timings", {})
    sel, lab = counts.get(rec["round"], (0, 0))
    return {"round": rec["round"], "state": rec["state"], "strategy": rec["strategy"],
            "batch_size": rec["batch_size"], "selected": sel, "labeled": lab,
            "checkpoint_uri": rec.get("checkpoint_uri"), "metrics": rec["metrics"],
            "diagnostics": diag, "timings": timings, "stop_reason": rec.get("stop_reason"),
            "error": rec.get("error"), "started_at": rec.get("started_at"),
            "updated_at": rec.get("updated_at")}


def _classes(store: Store) -> list[str]:
    return [str(c) for c in (store.get_meta("classes") or [])]


def _selection(store: Store, n: int) -> list[dict[str, Any]]:
    """Round ``n``'s selected frames in ``frame_id`` order, once the selection is final."""
    rec = store.get_round(n)
    if rec is None:
        have = [r["round"] for r in store.rounds()]
        raise ValueError(f"--round {n}: no such round (the store has rounds {have})")
    state = rec["state"]
    if state == "FAILED":  # failed after selecting: the selection stands
        state = rec["diagnostics"].get("failed_state", state)
    if state not in SELECTION_FINAL:
        raise ValueError(f"--round {n}: the round is {rec['state']}, its selection is not "
                         "final yet; run `alray run CONFIG` to finish selecting")
    from alray.pipeline.select import attach_selection  # rank, score, strategy, checkpoint

    rows = store.read_frames(SELECTION_COLUMNS, f"selected_round = {int(n)}").to_pylist()
    return attach_selection(store, n, rows)


def _media_name(frame_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", frame_id)[-80:]
    return f"{stem}-{hashlib.sha1(frame_id.encode()).hexdigest()[:8]}.png"


def _frame_urls(cfg: ProjectConfig, store: Store, rows: list[dict[str, Any]],
                media_dir: Path) -> list[str | None]:
    """What an annotator opens for each row: a presigned URL (an image on ``s3://``), a
    ``file://`` URI (a local image), or a PNG of the stored pixels written under
    ``media_dir`` (a frame inside a video or an IDX file)."""
    urls: list[str | None] = []
    decoded = []
    pool_root = Path(cfg.pool.uri.removeprefix("file://"))
    for r in rows:  # the selected frames of one round, not the pool
        uri = r["source_uri"] or ""
        if is_image_uri(uri) and is_remote(uri):
            urls.append(presign_s3(uri, URL_EXPIRY_S))
        elif is_image_uri(uri):
            path = Path(uri.removeprefix("file://"))
            if not path.is_absolute():
                path = (pool_root if pool_root.is_dir() else pool_root.parent) / path
            urls.append(path.resolve().as_uri())
        else:
            urls.append(None)
            decoded.append(len(urls) - 1)
    if decoded:
        from PIL import Image

        from alray.storage import sql_list

        ids = [rows[i]["frame_id"] for i in decoded]
        pix = {r["frame_id"]: r for r in store.read_frames(
            ["image", "height", "width", "channels"], f"frame_id IN {sql_list(ids)}").to_pylist()}
        media_dir.mkdir(parents=True, exist_ok=True)
        for i, fid in zip(decoded, ids, strict=True):
            r = pix.get(fid)
            if not r or not r["image"]:
                continue  # no stored pixels: the URL stays null
            a = np.frombuffer(r["image"], np.uint8).reshape(r["height"], r["width"], r["channels"])
            path = media_dir / _media_name(fid)
            Image.fromarray(a[:, :, 0] if r["channels"] == 1 else a).save(path)
            urls[i] = path.resolve().as_uri()
    return urls


def export_selection(cfg: ProjectConfig, store: Store, n: int, fmt: str, out: TextIO, *,
                     media_dir: Path) -> int:
    """Write round ``n``'s selection to ``out`` in ``fmt``; returns the number of frames.

    ``jsonl``: one frame per line; ``label-studio``: a JSON list of tasks; ``coco``: one COCO
    document. Frames without an image file of their own get a PNG under ``media_dir``.

    Raises:
        ValueError: no such round, or its selection is not final.
    """
    rows = _selection(store, n)
    urls = _frame_urls(cfg, store, rows, media_dir)
    classes = _classes(store)
    items = export_items(rows, fmt, urls=urls, classes=classes, offset=0)
    if fmt == "jsonl":
        out.writelines(json.dumps(i) + "\n" for i in items)
    elif fmt == "label-studio":
        out.write(json.dumps(items) + "\n")
    else:
        out.write(json.dumps(coco_document(items, classes)) + "\n")
    return len(rows)


def read_label_file(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The label items of a JSONL file, validated like ``POST .../labels`` items; returns
    ``(items, lines skipped)``.

    Each line is a JSON object with ``frame_id`` and ``label`` (a class index or name), and
    optionally ``idempotency_key``; other keys (an exported line's ``url``, ``round`` …) are
    ignored, and a line whose ``label`` is missing or null is skipped (not labeled yet).

    Raises:
        ValueError: a line is not JSON or not a valid item (naming the line and the field).
    """
    from pydantic import ValidationError

    from alray.service.schemas import LabelIn

    items, skipped = [], 0
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{no}: not JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{no}: expected a JSON object with frame_id and label")
        if obj.get("label") is None:
            skipped += 1
            continue
        try:
            item = LabelIn.model_validate({k: obj[k] for k in _LABEL_KEYS if k in obj})
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "line"
            raise ValueError(f"{path}:{no}: {where}: {e['msg']}") from None
        items.append(item.model_dump())
    return items, skipped


def push_labels(cfg: ProjectConfig, store: Store, items: Iterable[dict[str, Any]], *,
                overwrite: bool = False, source: str = "cli") -> dict[str, Any]:
    """Store labels as ``POST .../labels`` does: class names resolved, range-checked, judged
    and logged in ``label_events`` (idempotent). Returns the counts and one result per item."""
    from alray.labels import LabelItem, LabelResult, resolve_label, submit_labels

    classes = _classes(store)
    index = {c: i for i, c in enumerate(classes)}
    num_classes = cfg.model.num_classes or (len(classes) or None)
    ok: list[LabelItem] = []
    results: list[LabelResult | None] = []
    rejected = []
    for it in items:  # one file's items, not the pool
        label, reason = resolve_label(it["label"], index, num_classes)
        if reason is not None:
            results.append(LabelResult(it["frame_id"], "rejected", reason))
            rejected.append({"frame_id": it["frame_id"], "label": None,
                             "idempotency_key": it.get("idempotency_key"), "source": source,
                             "accepted": False, "reason": reason})
        else:
            ok.append(LabelItem(it["frame_id"], label, it.get("idempotency_key")))
            results.append(None)
    store.append_label_events(rejected)
    judged = iter(submit_labels(store, ok, source=source, overwrite=overwrite,
                                num_classes=num_classes))
    out = [r if r is not None else next(judged) for r in results]
    counts = {s: sum(r.status == s for r in out)
              for s in ("accepted", "duplicate", "conflict", "rejected")}
    return {**counts, "results": [{"frame_id": r.frame_id, "status": r.status,
                                   "reason": r.reason} for r in out]}
