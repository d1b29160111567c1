"""Image prefixes: every image under a folder or ``s3://`` prefix, unlabeled.

Typical of extracted dashcam frames (``drive-7/front/frame_000123.jpg``). The ``source_id`` of
an image is its parent folder relative to the pool root (the pool's name for top-level files)
and its ``frame_index`` the last number in its file name (else a stable hash), so ids do not
change as images are added.
"""

from __future__ import annotations

import numpy as np

from alray.sources._common import frame_number, pack, relative, unpack, with_retry
from alray.sources.base import PoolListing, make_batch
from alray.sources.image_folder import IMAGE_SUFFIXES, _decode
from alray.storage.uri import list_files, read_bytes, resolve

__all__ = ["image_task", "list_image_prefix", "read_image_items"]


def image_task(uris: list[str], source_ids: list[str], frame_index: list[int],
               timestamp_ms: list[int] | None = None, labels: list[int] | None = None) -> dict:
    """One work item for :func:`read_image_items` (parallel lists, one entry per image)."""
    n = len(uris)
    return {"kind": "images", "uris": list(uris), "source_ids": list(source_ids),
            "frame_index": [int(i) for i in frame_index],
            "timestamp_ms": [int(t) for t in (timestamp_ms or [0] * n)],
            "labels": [int(x) for x in (labels or [-1] * n)]}


def list_image_prefix(uri: str, *, limit: int | None = None, pool=None,
                      shard_size: int = 256) -> PoolListing:
    """List the images under ``uri`` and group them into work items.

    Raises:
        FileNotFoundError: no images under ``uri``.
    """
    root = uri.rstrip("/") if "://" in uri else resolve(uri)[1]
    files = [f for f in list_files(uri) if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under pool.uri={uri!r}")
    files = files[:limit] if limit else files
    rel = [relative(f, root) for f in files]
    base = root.rsplit("/", 1)[-1]
    sources = [r.rsplit("/", 1)[0] if "/" in r else base for r in rel]
    idx = [frame_number(r) for r in rel]
    tasks = [pack(image_task(files[s: s + shard_size], sources[s: s + shard_size], idx[s: s + shard_size]))
             for s in range(0, len(files), shard_size)]
    return PoolListing(tasks=tasks, classes=[])


def read_image_items(task: dict, *, input_size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode an image work item; an undecodable image is a ``failed`` frame with the error."""
    task = unpack(task)
    images, errors = [], []
    for uri in task["uris"]:  # each image is its own object: one read per file
        try:
            data = with_retry(lambda u=uri: read_bytes(u), what=f"read {uri}")
            images.append(_decode(data, input_size, channels).tobytes())
            errors.append("")
        except Exception as err:  # noqa: BLE001 - any read/decoder failure marks the frame failed
            images.append(b"")
            errors.append(f"cannot decode {uri}: {type(err).__name__}: {err}")
    sids, idx = task["source_ids"], task["frame_index"]
    return make_batch(
        frame_id=[f"{s}:{i}" for s, i in zip(sids, idx, strict=True)],
        source_uri=list(task["uris"]), source_id=list(sids),
        frame_index=np.asarray(idx, dtype=np.int64),
        timestamp_ms=np.asarray(task["timestamp_ms"], dtype=np.int64),
        images=images, shape=(input_size, input_size, channels),
        gt_label=np.asarray(task["labels"], dtype=np.int64), error=errors,
    )
