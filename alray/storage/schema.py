"""Arrow schemas of the project's LanceDB tables (DESIGN.md, "Data model")."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

__all__ = [
    "FRAME_STATUSES",
    "FrameStatus",
    "Split",
    "SPLITS",
    "frames_schema",
    "GROUND_TRUTH_SCHEMA",
    "LABEL_EVENTS_SCHEMA",
    "META_SCHEMA",
    "ROUNDS_SCHEMA",
    "SELECTIONS_SCHEMA",
]


class Split(StrEnum):
    """Which part of the data a frame belongs to (val/test are never offered to a strategy)."""

    POOL = "pool"
    VAL = "val"
    TEST = "test"


class FrameStatus(StrEnum):
    """A frame's label state: ``unlabeled → selected → labeled``; ``failed`` did not decode."""

    UNLABELED = "unlabeled"
    SELECTED = "selected"
    LABELED = "labeled"
    FAILED = "failed"


SPLITS = tuple(s.value for s in Split)
FRAME_STATUSES = tuple(s.value for s in FrameStatus)


def frames_schema(embedding_dim: int) -> pa.Schema:
    """One row per frame; ``embedding`` is a FixedSizeList so LanceDB sees a vector column."""
    return pa.schema([
        pa.field("frame_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("frame_index", pa.int64()),
        pa.field("timestamp_ms", pa.int64()),
        pa.field("split", pa.string()),
        pa.field("status", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("selected_round", pa.int64()),
        pa.field("labeled_round", pa.int64()),
        pa.field("embedding", pa.list_(pa.float32(), embedding_dim)),
        pa.field("score", pa.float32()),
        pa.field("error", pa.string()),
        pa.field("image", pa.binary()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("channels", pa.int32()),
    ])


# Labels that ship with a pool: only the simulated annotator reads this table.
GROUND_TRUTH_SCHEMA = pa.schema([
    pa.field("frame_id", pa.string(), nullable=False),
    pa.field("label", pa.int64()),
])

ROUNDS_SCHEMA = pa.schema([
    pa.field("round", pa.int64(), nullable=False),
    pa.field("state", pa.string()),
    pa.field("strategy", pa.string()),
    pa.field("batch_size", pa.int64()),
    pa.field("checkpoint_uri", pa.string()),
    pa.field("metrics", pa.string()),  # JSON
    pa.field("diagnostics", pa.string()),  # JSON
    pa.field("stop_reason", pa.string()),
    pa.field("error", pa.string()),
    pa.field("started_at", pa.float64()),
    pa.field("updated_at", pa.float64()),
])

LABEL_EVENTS_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("frame_id", pa.string()),
    pa.field("label", pa.int64()),
    pa.field("idempotency_key", pa.string()),
    pa.field("round", pa.int64()),
    pa.field("source", pa.string()),
    pa.field("accepted", pa.bool_()),
    pa.field("reason", pa.string()),
    pa.field("received_at", pa.float64()),
])

# One row per frame a round selected: what was picked, in which order, by what and how it
# scored then (frames.score is overwritten by later rounds; this record is not).
SELECTIONS_SCHEMA = pa.schema([
    pa.field("round", pa.int64(), nullable=False),
    pa.field("frame_id", pa.string(), nullable=False),
    pa.field("rank", pa.int64()),  # 0 = picked first
    pa.field("score", pa.float32()),  # acquisition.score under the selecting model (null: unscored)
    pa.field("score_name", pa.string()),
    pa.field("strategy", pa.string()),
    pa.field("checkpoint_uri", pa.string()),  # the model that scored (null: round 0 / random)
    pa.field("selected_at", pa.float64()),
])

META_SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.string()),  # JSON
])
