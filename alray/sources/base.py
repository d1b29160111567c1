"""The record contract every pool reader produces.

A reader turns a pool URI into batches (``dict[str, np.ndarray]``) with these keys:

- ``frame_id`` (str): stable key ``<source_id>:<frame_index>``
- ``source_uri`` (str), ``source_id`` (str), ``frame_index`` (int64), ``timestamp_ms`` (int64)
- ``image`` (bytes): raw uint8 pixels, ``height x width x channels``, row-major (empty if failed)
- ``height``, ``width``, ``channels`` (int32)
- ``gt_label`` (int64): ground-truth class index shipped with the pool, -1 if none
- ``error`` (str): empty, or why the frame failed to decode

Readers resize/convert to the model's input size and channels on decode, so stored frames are
model-ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RECORD_KEYS", "PoolListing", "empty_batch", "make_batch"]

RECORD_KEYS = (
    "frame_id", "source_uri", "source_id", "frame_index", "timestamp_ms",
    "image", "height", "width", "channels", "gt_label", "error",
)


@dataclass(frozen=True)
class PoolListing:
    """What a reader found: work items for Ray Data, and the class names of the pool."""

    tasks: list[dict]
    classes: list[str]


def make_batch(
    *,
    frame_id: list[str],
    source_uri: list[str],
    source_id: list[str],
    frame_index: np.ndarray,
    timestamp_ms: np.ndarray,
    images: list[bytes],
    shape: tuple[int, int, int],
    gt_label: np.ndarray,
    error: list[str],
) -> dict[str, np.ndarray]:
    """Assemble a record batch with the right dtypes."""
    n = len(frame_id)
    h, w, c = shape
    return {
        "frame_id": np.asarray(frame_id, dtype=object),
        "source_uri": np.asarray(source_uri, dtype=object),
        "source_id": np.asarray(source_id, dtype=object),
        "frame_index": np.asarray(frame_index, dtype=np.int64),
        "timestamp_ms": np.asarray(timestamp_ms, dtype=np.int64),
        "image": np.asarray(images, dtype=object),
        "height": np.full(n, h, dtype=np.int32),
        "width": np.full(n, w, dtype=np.int32),
        "channels": np.full(n, c, dtype=np.int32),
        "gt_label": np.asarray(gt_label, dtype=np.int64),
        "error": np.asarray(error, dtype=object),
    }


def empty_batch() -> dict[str, np.ndarray]:
    """A batch with no rows."""
    return make_batch(
        frame_id=[], source_uri=[], source_id=[], frame_index=np.zeros(0),
        timestamp_ms=np.zeros(0), images=[], shape=(0, 0, 0), gt_label=np.zeros(0), error=[],
    )
