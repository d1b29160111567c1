"""Image prefixes: every image under a folder or ``s3://`` prefix, unlabeled.

Typical of extracted dashcam frames (``drive-7/front/frame_000123.jpg``). A frame's id is the
image's path relative to the pool root (``drive-7/front/frame_000123.jpg``), its ``source_id``
the folder part of that path (``.`` at the top level) and its ``frame_index`` the last number in
its file name (an ordering hint only, 0 if none; never part of the id).
"""

from __future__ import annotations

import numpy as np

from alray.sources._common import (
    check_unique,
    frame_number,
    pack,
    parent,
    pool_root,
    relative_keys,
    unpack,
    with_retry,
)
from alray.sources.base import PoolListing, make_batch
from alray.sources.image_folder import IMAGE_SUFFIXES, decode_files
from alray.storage.uri import list_files, read_bytes

__all__ = ["image_task", "list_image_prefix", "read_image_items"]


def image_task(uris: list[str], keys: list[str], source_ids: list[str], frame_index: list[int],
               timestamp_ms: list[int] | None = None, labels: list[int] | None = None) -> dict:
    """One work item for :func:`read_image_items` (parallel lists, one entry per image;
    ``keys``: the frame ids, paths relative to the pool root)."""
    n = len(uris)
    return {"kind": "images", "uris": list(uris), "keys": list(keys),
            "source_ids": list(source_ids),
            "frame_index": [int(i) for i in frame_index],
            "timestamp_ms": [int(t) for t in (timestamp_ms or [0] * n)],
            "labels": [int(x) for x in (labels or [-1] * n)]}


def list_image_prefix(uri: str, *, limit: int | None = None, pool=None,
                      shard_size: int = 256) -> PoolListing:
    """List the images under ``uri`` and group them into work items.

    Raises:
        FileNotFoundError: no images under ``uri``.
    """
    root = pool_root(getattr(pool, "root", None) or uri)
    files = [f for f in list_files(uri) if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under pool.uri={uri!r}")
    files = files[:limit] if limit else files
    keys = relative_keys(files, root)
    if None in keys:
        raise ValueError(f"pool.root={root!r} does not hold pool.uri's images (e.g. "
                         f"{files[keys.index(None)]!r}): set pool.root to a folder above them")
    check_unique(keys, what=f"image prefix {uri}")
    sources = [parent(k) for k in keys]
    idx = [frame_number(k) for k in keys]
    tasks = [pack(image_task(files[s: s + shard_size], keys[s: s + shard_size],
                             sources[s: s + shard_size], idx[s: s + shard_size]))
             for s in range(0, len(files), shard_size)]
    return PoolListing(tasks=tasks, classes=[], root=root)


def read_image_items(task: dict, *, input_size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode an image work item; an undecodable image is a ``failed`` frame with the error."""
    task = unpack(task)
    images, errors, src = decode_files(
        task["uris"], input_size, channels,
        read=lambda u: with_retry(lambda: read_bytes(u), what=f"read {u}"))
    return make_batch(
        frame_id=list(task["keys"]),
        source_uri=list(task["uris"]), source_id=list(task["source_ids"]),
        frame_index=np.asarray(task["frame_index"], dtype=np.int64),
        timestamp_ms=np.asarray(task["timestamp_ms"], dtype=np.int64),
        images=images, shape=(input_size, input_size, channels),
        gt_label=np.asarray(task["labels"], dtype=np.int64), error=errors, src_shape=src,
    )
