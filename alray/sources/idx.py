"""MNIST-style IDX pools: ``*images-idx3-ubyte[.gz]`` plus ``*labels-idx1-ubyte[.gz]``.

A frame's id is ``<images file name>:<record index>`` (the file's path under the pool root).
A truncated images file marks the missing records ``failed`` (naming the record); the records
before the cut are ingested.
"""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np

from alray.sources._common import pool_root
from alray.sources.base import PoolListing, make_batch
from alray.storage.uri import list_files, read_bytes

__all__ = ["list_idx", "read_idx_shard"]

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def _load(uri: str) -> bytes:
    raw = read_bytes(uri)
    if uri.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                return f.read()
        except (EOFError, OSError):
            # A truncated gzip stream: keep what decompresses.
            d = gzip.zlib.decompressobj(16 + gzip.zlib.MAX_WBITS)
            return d.decompress(raw)
    return raw


def _find(files: list[str], kind: str, uri: str) -> str:
    hits = sorted(f for f in files if f"{kind}-idx" in f.rsplit("/", 1)[-1])
    if not hits:
        raise FileNotFoundError(f"no '*{kind}-idx*-ubyte[.gz]' file under pool.uri={uri!r}")
    return hits[0]


def list_idx(uri: str, *, shard_size: int = 2500, limit: int | None = None,
             pool=None) -> PoolListing:
    """Find the IDX files under ``uri`` and split the images into Ray Data work items.

    Raises:
        FileNotFoundError: no images file under ``uri``.
        ValueError: the images header is not IDX3 (names the file).
    """
    files = list_files(uri, recursive=False)
    images_uri = _find(files, "images", uri)
    try:
        labels_uri: str | None = _find(files, "labels", uri)
    except FileNotFoundError:
        labels_uri = None
    head = _load(images_uri)[:16]
    if len(head) < 16:
        raise ValueError(f"{images_uri}: file too short for an IDX3 header")
    magic, count, rows, cols = struct.unpack(">IIII", head)
    if magic != _IMAGES_MAGIC:
        raise ValueError(f"{images_uri}: magic {magic}, expected {_IMAGES_MAGIC} (IDX3 images)")
    if limit is not None:
        count = min(count, limit)
    tasks = [
        {"images_uri": images_uri, "labels_uri": labels_uri or "", "start": s,
         "stop": min(s + shard_size, count), "rows": rows, "cols": cols}
        for s in range(0, count, shard_size)
    ]
    # IDX labels are class indices already (MNIST: the digit); pool.classes may name them.
    classes = list(getattr(pool, "classes", None) or [str(i) for i in range(10)])
    return PoolListing(tasks=tasks, classes=classes if labels_uri else [],
                       root=pool_root(uri), labeled=count if labels_uri else 0)


def read_idx_shard(task: dict, *, input_size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode records ``[start, stop)`` of an IDX images file (a Ray Data work item)."""
    images_uri, start, stop = task["images_uri"], int(task["start"]), int(task["stop"])
    rows, cols = int(task["rows"]), int(task["cols"])
    data = _load(images_uri)
    rec = rows * cols
    n = stop - start
    idx = np.arange(start, stop, dtype=np.int64)
    avail = max(0, min(n, (len(data) - 16) // rec - start))
    pix = np.frombuffer(data, dtype=np.uint8, count=avail * rec, offset=16 + start * rec)
    pix = pix.reshape(avail, rows, cols)
    pix = _resize(pix, input_size, channels)
    images = [p.tobytes() for p in pix] + [b""] * (n - avail)
    errors = [""] * avail + [
        f"truncated IDX record {i} in {images_uri}: expected {rec} bytes" for i in idx[avail:]
    ]
    gt = np.full(n, -1, dtype=np.int64)
    if task["labels_uri"]:
        lab = _load(task["labels_uri"])
        got = np.frombuffer(lab, dtype=np.uint8, offset=8)[start:stop]
        gt[: len(got)] = got
    source_id = images_uri.rsplit("/", 1)[-1]
    return make_batch(
        frame_id=[f"{source_id}:{i}" for i in idx],
        source_uri=[images_uri] * n,
        source_id=[source_id] * n,
        frame_index=idx,
        timestamp_ms=np.zeros(n, dtype=np.int64),
        images=images,
        shape=(input_size, input_size, channels),
        gt_label=gt,
        error=errors,
        src_shape=np.tile(np.array([rows, cols, 1], np.int32), (n, 1)) * (
            np.asarray(errors, dtype=object) == "")[:, None],
    )


def _resize(pix: np.ndarray, size: int, channels: int) -> np.ndarray:
    """``[N, H, W]`` uint8 -> ``[N, size, size, channels]`` uint8."""
    if pix.shape[1] != size or pix.shape[2] != size:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(pix.astype(np.float32))[:, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        pix = t[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return np.repeat(pix[..., None], channels, axis=-1)
