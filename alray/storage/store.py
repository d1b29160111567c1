"""The project store: one LanceDB database holding frames, rounds, label events and metadata.

The store is the source of truth: every pipeline step reads its inputs from here and writes
its results back, so a crashed step can be re-run safely.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import Bitmap, BTree

from alray.storage import schema as S
from alray.storage.uri import is_remote, join, resolve, storage_options

__all__ = ["SCORABLE", "Store", "frame_filter", "sql_list"]


def sql_list(values: Iterable[Any]) -> str:
    """Render values as a SQL ``IN (...)`` list (strings quoted and escaped)."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append("'" + v.replace("'", "''") + "'")
        else:
            out.append(str(int(v)))
    return "(" + ", ".join(out) + ")"


def _statuses(status: S.FrameStatus | Iterable[S.FrameStatus]) -> list[str]:
    return [S.FrameStatus(status).value] if isinstance(status, str) else [
        S.FrameStatus(x).value for x in status]


def frame_filter(*, split: S.Split | None = None,
                 status: S.FrameStatus | Iterable[S.FrameStatus] | None = None,
                 exclude: S.FrameStatus | Iterable[S.FrameStatus] | None = None,
                 also: str | None = None) -> str:
    """The SQL filter over ``frames`` for a split, statuses (one of ``status``, none of
    ``exclude``) and an extra clause ``also``, e.g.
    ``frame_filter(split=Split.POOL, exclude=FrameStatus.FAILED)``."""
    parts = [f"split = '{S.Split(split).value}'"] if split is not None else []
    if status is not None:
        parts.append(f"status IN {sql_list(_statuses(status))}")
    if exclude is not None:
        parts.append(f"status NOT IN {sql_list(_statuses(exclude))}")
    if also:
        parts.append(f"({also})")
    return " AND ".join(parts) or "TRUE"


#: Pool frames a model can score: decoded (not failed), whatever their label state.
SCORABLE = frame_filter(split=S.Split.POOL, exclude=S.FrameStatus.FAILED)


class Store:
    """A project's LanceDB database at ``uri`` (a folder or ``s3://bucket/prefix``)."""

    def __init__(self, uri: str):
        self.uri = uri if is_remote(uri) else resolve(uri)[1]
        opts = storage_options() if is_remote(uri) else None
        self.db = lancedb.connect(self.uri, storage_options=opts)
        self._tables: dict[str, Any] = {}

    # ---- tables -------------------------------------------------------------------------
    def _names(self) -> set[str]:
        res = self.db.list_tables()
        names = getattr(res, "tables", res)
        return set(names)

    def _table(self, name: str, schema: pa.Schema | None = None):
        if name in self._tables:
            return self._tables[name]
        if name in self._names():
            table = self.db.open_table(name)
        elif schema is not None:
            table = self.db.create_table(name, schema=schema, exist_ok=True)
        else:
            raise LookupError(f"table {name!r} does not exist in store {self.uri!r} (ingest first)")
        self._tables[name] = table
        return table

    def has_frames(self) -> bool:
        return "frames" in self._names()

    @property
    def frames(self):
        return self._table("frames")

    def frames_uri(self) -> str:
        """URI of the Lance dataset behind ``frames`` (for Ray Data readers)."""
        return join(self.uri, "frames.lance")

    def embedding_dim(self) -> int:
        return self.frames.schema.field("embedding").type.list_size

    # ---- frames -------------------------------------------------------------------------
    def add_frames(self, batch: pa.Table, embedding_dim: int) -> tuple[int, int]:
        """Insert frames whose ``frame_id`` is new; return ``(added, already_present)``."""
        table = self._table("frames", S.frames_schema(embedding_dim))
        batch = batch.select(table.schema.names).cast(table.schema)
        res = (table.merge_insert("frame_id").when_not_matched_insert_all()
               .execute(batch, on_bad_vectors="null"))
        return int(res.num_inserted_rows), batch.num_rows - int(res.num_inserted_rows)

    def ensure_key_index(self, table_name: str, column: str) -> bool:
        """Create a BTREE index on ``column`` of ``table_name`` unless it has one.

        ``frames.frame_id`` is the key of every label lookup and ``merge_insert``: without an
        index each is a scan of the whole table (seconds per label batch at a million
        frames). Rows appended later are searched flat until the next ``optimize()``.

        Returns:
            True if an index was created (False: it existed, or the table is missing/empty).
        """
        if table_name not in self._names():
            return False
        table = self._table(table_name)
        if any(column in ix.columns for ix in table.list_indices()) or not table.count_rows():
            return False
        table.create_index(column, config=BTree())
        return True

    def ensure_status_indices(self) -> list[str]:
        """Create BITMAP indices on ``frames.split`` and ``frames.status`` where missing.

        The service's frame counts (``count_status``, ``/metrics``) are ``count_rows`` with
        filters on these two low-cardinality columns: indexed, each count reads bitmaps, not
        the column. Rows written later are checked flat until the next ``optimize()``.

        Returns:
            The columns indexed now (empty: all had one, or the table is missing/empty).
        """
        if "frames" not in self._names() or not self.frames.count_rows():
            return []
        have = {c for ix in self.frames.list_indices() for c in ix.columns}
        todo = [c for c in ("split", "status") if c not in have]
        for column in todo:
            self.frames.create_index(column, config=Bitmap())
        return todo

    def update_frames(self, updates: pa.Table) -> None:
        """Update the given columns of existing frames (``updates`` holds ``frame_id``)."""
        if updates.num_rows == 0:
            return
        schema = self.frames.schema
        updates = updates.cast(pa.schema([schema.field(n) for n in updates.column_names]))
        self.frames.merge_insert("frame_id").when_matched_update_all().execute(updates)

    def read_frames(self, columns: list[str], where: str | None = None) -> pa.Table:
        """Read columns of the frames matching a SQL filter, in ``frame_id`` order."""
        q = self.frames.search().select(list(dict.fromkeys(["frame_id", *columns])))
        if where:
            q = q.where(where)
        t = q.limit(None).to_arrow()
        return t.take(pc.sort_indices(t, [("frame_id", "ascending")]))

    def count_frames(self, where: str | None = None) -> int:
        return self.frames.count_rows(where) if where else self.frames.count_rows()

    def count_status(self, status: S.FrameStatus | Iterable[S.FrameStatus], *,
                     split: S.Split | None = None) -> int:
        """Frames in ``split`` (all splits: None) whose status is one of ``status``."""
        return self.count_frames(frame_filter(split=split, status=status))

    def tag_frames(self, name: str) -> None:
        """Tag the current version of ``frames`` (e.g. ``round-3``); re-tagging moves it."""
        tags = self.frames.tags
        if name in tags.list():
            tags.update(name, self.frames.version)
        else:
            tags.create(name, self.frames.version)

    def frame_tags(self) -> dict[str, int]:
        return {k: v["version"] for k, v in self.frames.tags.list().items()}

    # ---- ground truth (simulated annotator only) ------------------------------------------
    def add_ground_truth(self, frame_ids: np.ndarray, labels: np.ndarray) -> None:
        table = self._table("ground_truth", S.GROUND_TRUTH_SCHEMA)
        data = pa.table({"frame_id": pa.array(frame_ids, pa.string()),
                         "label": pa.array(labels, pa.int64())})
        table.merge_insert("frame_id").when_not_matched_insert_all().execute(data)

    def ground_truth(self, frame_ids: list[str]) -> dict[str, int]:
        if "ground_truth" not in self._names() or not frame_ids:
            return {}
        t = self._table("ground_truth").search().where(
            f"frame_id IN {sql_list(frame_ids)}").limit(None).to_arrow()
        return dict(zip(t["frame_id"].to_pylist(), t["label"].to_pylist(), strict=True))

    # ---- metadata -----------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        table = self._table("meta", S.META_SCHEMA)
        data = pa.table({"key": [key], "value": [json.dumps(value)]}, schema=S.META_SCHEMA)
        (table.merge_insert("key").when_matched_update_all()
         .when_not_matched_insert_all().execute(data))

    def get_meta(self, key: str, default: Any = None) -> Any:
        if "meta" not in self._names():
            return default
        rows = self._table("meta").search().where(
            f"key = {sql_list([key])[1:-1]}").limit(1).to_arrow().to_pylist()
        return json.loads(rows[0]["value"]) if rows else default

    # ---- rounds -------------------------------------------------------------------------
    def put_round(self, record: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a round record (``metrics``/``diagnostics`` as dicts)."""
        table = self._table("rounds", S.ROUNDS_SCHEMA)
        row = dict(record)
        row["updated_at"] = time.time()
        row.setdefault("started_at", row["updated_at"])
        for key in ("metrics", "diagnostics"):
            row[key] = json.dumps(row.get(key) or {})
        data = pa.Table.from_pylist([{f: row.get(f) for f in S.ROUNDS_SCHEMA.names}],
                                    schema=S.ROUNDS_SCHEMA)
        (table.merge_insert("round").when_matched_update_all()
         .when_not_matched_insert_all().execute(data))
        return record

    def rounds(self) -> list[dict[str, Any]]:
        """All round records, oldest first."""
        if "rounds" not in self._names():
            return []
        rows = self._table("rounds", S.ROUNDS_SCHEMA).to_arrow().to_pylist()
        for r in rows:
            r["metrics"] = json.loads(r["metrics"] or "{}")
            r["diagnostics"] = json.loads(r["diagnostics"] or "{}")
        return sorted(rows, key=lambda r: r["round"])

    def get_round(self, n: int) -> dict[str, Any] | None:
        return next((r for r in self.rounds() if r["round"] == n), None)

    # ---- selection records ----------------------------------------------------------------
    def put_selection(self, round_n: int, rows: pa.Table) -> None:
        """Record round ``round_n``'s selection (``SELECTIONS_SCHEMA`` columns but ``round``),
        replacing any earlier record of that round in one commit (a re-run writes it again)."""
        table = self._table("selections", S.SELECTIONS_SCHEMA)
        data = rows.append_column("round", pa.array(np.full(rows.num_rows, int(round_n))))
        data = data.select(S.SELECTIONS_SCHEMA.names).cast(S.SELECTIONS_SCHEMA)
        (table.merge_insert(["round", "frame_id"]).when_matched_update_all()
         .when_not_matched_insert_all()
         .when_not_matched_by_source_delete(f"round = {int(round_n)}").execute(data))

    def selections(self, round_n: int | None = None) -> pa.Table:
        """Selection records (of one round, or all), ordered by ``round`` then ``rank``."""
        if "selections" not in self._tables and "selections" not in self._names():
            return S.SELECTIONS_SCHEMA.empty_table()
        q = self._table("selections").search()
        if round_n is not None:
            q = q.where(f"round = {int(round_n)}")
        t = q.limit(None).to_arrow().select(S.SELECTIONS_SCHEMA.names)
        return t.take(pc.sort_indices(t, [("round", "ascending"), ("rank", "ascending")]))

    # ---- label events -------------------------------------------------------------------
    def append_label_events(self, events: list[dict[str, Any]]) -> None:
        """Append label submissions to the audit log (never rewritten)."""
        if not events:
            return
        table = self._table("label_events", S.LABEL_EVENTS_SCHEMA)
        now = time.time()
        rows = [{"event_id": uuid.uuid4().hex, "received_at": now, **e} for e in events]
        table.add(pa.Table.from_pylist(
            [{f: r.get(f) for f in S.LABEL_EVENTS_SCHEMA.names} for r in rows],
            schema=S.LABEL_EVENTS_SCHEMA))

    def count_label_events(self, accepted: bool | None = None) -> int:
        """Label events in the audit log (only accepted/refused ones: ``accepted``), counted
        in the table, never read."""
        if "label_events" not in self._tables and "label_events" not in self._names():
            return 0
        table = self._table("label_events")
        return table.count_rows(None if accepted is None else f"accepted = {bool(accepted)}")

    def label_events(self, where: str | None = None) -> pa.Table:
        if "label_events" not in self._tables and "label_events" not in self._names():
            return S.LABEL_EVENTS_SCHEMA.empty_table()
        q = self._table("label_events").search()
        if where:
            q = q.where(where)
        return q.limit(None).to_arrow()
