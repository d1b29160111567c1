"""Image-folder pools: one subfolder per class, or images plus ``labels.csv``.

``labels.csv`` has a header with ``filename`` and ``label`` columns (a path relative to the pool
root, and a class name). A file that cannot be decoded marks its frame ``failed`` with the
decoder's error; the rest is ingested.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from alray.sources.base import PoolListing, make_batch
from alray.storage.uri import list_files, read_bytes, resolve

__all__ = ["IMAGE_SUFFIXES", "list_image_folder", "read_image_files"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")


def list_image_folder(uri: str, *, shard_size: int = 256, limit: int | None = None) -> PoolListing:
    """List images under ``uri`` and group them into Ray Data work items.

    Raises:
        FileNotFoundError: ``uri`` has no images.
        ValueError: ``labels.csv`` lacks the ``filename``/``label`` columns.
    """
    all_files = list_files(uri, recursive=True)
    root = uri.rstrip("/") if "://" in uri else resolve(uri)[1]
    files = [f for f in all_files if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under pool.uri={uri!r}")
    rel = [f[len(root):].lstrip("/") for f in files]
    names: list[str]
    if f"{root}/labels.csv" in all_files:
        text = read_bytes(f"{root}/labels.csv").decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{uri}/labels.csv: needs 'filename' and 'label' columns, "
                             f"got {reader.fieldnames}")
        by_name = {row["filename"].lstrip("./"): row["label"] for row in reader}
        names = [by_name.get(r, "") for r in rel]
    else:
        names = [r.split("/", 1)[0] if "/" in r else "" for r in rel]
    classes = sorted({n for n in names if n})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(n, -1) for n in names]
    if limit is not None:
        files, rel, labels = files[:limit], rel[:limit], labels[:limit]
    tasks = [
        {"uris": files[s: s + shard_size],
         "frame_ids": rel[s: s + shard_size],
         "labels": labels[s: s + shard_size],
         "source_id": root.rstrip("/").rsplit("/", 1)[-1]}
        for s in range(0, len(files), shard_size)
    ]
    return PoolListing(tasks=tasks, classes=classes)


def _decode(data: bytes, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(size, size, channels)


def read_image_files(task: dict, *, input_size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode one work item of image files (a Ray Data work item)."""
    images, errors = [], []
    for uri in task["uris"]:  # per-file decode is inherent: each file is its own object
        try:
            images.append(_decode(read_bytes(uri), input_size, channels).tobytes())
            errors.append("")
        except Exception as err:  # noqa: BLE001 - any decoder failure marks the frame failed
            images.append(b"")
            errors.append(f"cannot decode {uri}: {type(err).__name__}: {err}")
    n = len(task["uris"])
    source_id = task["source_id"]
    return make_batch(
        frame_id=[f"{source_id}:{r}" for r in task["frame_ids"]],
        source_uri=list(task["uris"]),
        source_id=[source_id] * n,
        frame_index=np.arange(n, dtype=np.int64),
        timestamp_ms=np.zeros(n, dtype=np.int64),
        images=images,
        shape=(input_size, input_size, channels),
        gt_label=np.asarray(task["labels"], dtype=np.int64),
        error=errors,
    )
