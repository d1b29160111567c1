"""The record contract every pool reader produces.

A reader turns a pool URI into batches (``dict[str, np.ndarray]``) with these keys:

- ``frame_id`` (str): unique, stable key: the path relative to the pool root, plus
  ``:<frame_index>`` for a frame inside a video (never an absolute path, never a number parsed
  out of a file name; DESIGN.md "Frame identity")
- ``source_uri`` (str), ``source_id`` (str), ``frame_index`` (int64), ``timestamp_ms`` (int64)
- ``image`` (bytes): raw uint8 pixels, ``height x width x channels``, row-major (empty if failed)
- ``height``, ``width``, ``channels`` (int32)
- ``gt_label`` (int64): ground-truth class index shipped with the pool, -1 if none
- ``error`` (str): empty, or why the frame failed to decode
- ``src_height``, ``src_width``, ``src_channels`` (int32): the source's size and channels (1
  gray, 3 colour) before conversion, 0 where unknown or failed (ingest's resize notice and
  channel check)

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
    "src_height", "src_width", "src_channels",
)


@dataclass(frozen=True)
class PoolListing:
    """What a reader found: work items for Ray Data, the class names of the pool (index =
    label), the root its frame ids are relative to, and how many listed items carry a label
    (images; videos count once)."""

    tasks: list[dict]
    classes: list[str]
    root: str = ""
    labeled: int = 0


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
    src_shape: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Assemble a record batch with the right dtypes (``src_shape``: ``[n, 3]`` source
    height, width, channels; None: unknown)."""
    n = len(frame_id)
    h, w, c = shape
    src = np.zeros((n, 3), np.int32) if src_shape is None else np.asarray(src_shape, np.int32)
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
        "src_height": src[:, 0].copy(),
        "src_width": src[:, 1].copy(),
        "src_channels": src[:, 2].copy(),
    }


def empty_batch() -> dict[str, np.ndarray]:
    """A batch with no rows."""
    return make_batch(
        frame_id=[], source_uri=[], source_id=[], frame_index=np.zeros(0),
        timestamp_ms=np.zeros(0), images=[], shape=(0, 0, 0), gt_label=np.zeros(0), error=[],
    )
