"""Image-folder pools: images under a folder (local or ``s3://``), labeled by a CSV or by
one subfolder per class.

Labels: ``pool.labels_file`` (default ``labels.csv`` in the folder, if present; any CSV with a
path and a label column, see :mod:`alray.sources.labels_csv`), else the first folder of each
image's path is its class (``car/001.png``), images at the top level are unlabeled. Class
order: :func:`alray.labels.class_index`.

A frame's id is the image's path relative to the pool root (``cam0/000001.png``), its
``source_id`` the folder part of that path (``.`` at the top level). A file that cannot be
decoded marks its frame ``failed`` with the decoder's error; the rest is ingested.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from alray.sources._common import check_unique, frame_number, parent, pool_root
from alray.sources.base import PoolListing, make_batch
from alray.sources.labels_csv import read_labels_file
from alray.storage.uri import list_files, read_bytes

__all__ = ["IMAGE_SUFFIXES", "decode_image", "list_image_folder", "read_image_files"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _labels_uri(pool, root: str, all_files: list[str]) -> str | None:
    given = getattr(pool, "labels_file", None)
    if given:
        return given if "://" in given or given.startswith("/") else f"{root}/{given}"
    return f"{root}/labels.csv" if f"{root}/labels.csv" in all_files else None


def _names_from_csv(uri: str, root: str, keys: list[str], pool) -> np.ndarray:
    """Each listed image's raw label from the labels file ('' where it has none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lf = read_labels_file(uri, root, path_column=getattr(pool, "path_column", None),
                          label_column=getattr(pool, "label_column", None))
    pos = pc.index_in(pa.array(keys, pa.string()), value_set=pa.array(lf.keys.astype(str)))
    hit = ~np.asarray(pc.is_null(pos))
    if not hit.any():
        example = next((str(k) for k in lf.keys if k), "(none under the pool root)")
        raise ValueError(f"labels file {uri}: none of its {lf.keys.size} paths (column "
                         f"{lf.path_column!r}, e.g. {example!r}) names an image under the pool "
                         f"root {root!r} (e.g. {keys[0]!r}); paths are relative to the CSV's "
                         "folder")
    missing = int(lf.keys.size - hit.sum())
    if missing:
        log.warning("labels file %s: %d of its rows name no image under %s", uri, missing, root)
    names = np.full(len(keys), "", dtype=object)
    names[hit] = lf.labels[np.asarray(pos.fill_null(0))[hit]]
    return names


def list_image_folder(uri: str, *, shard_size: int = 256, limit: int | None = None,
                      pool=None) -> PoolListing:
    """List images under ``uri`` and group them into Ray Data work items.

    Args:
        uri: the folder (path, ``file://`` or ``s3://``).
        shard_size: images per work item.
        limit: at most this many images (None: all).
        pool: the ``PoolConfig`` (``labels_file``, ``path_column``, ``label_column``,
            ``classes``, ``root``); None: defaults.

    Raises:
        FileNotFoundError: ``uri`` has no images, or ``pool.labels_file`` is missing.
        ValueError: the labels file lacks a column (names those found and wanted), names no
            image, or has a label outside ``pool.classes``.
    """
    from alray.sources.classes import class_index

    all_files = list_files(uri, recursive=True)
    root = pool_root(getattr(pool, "root", None) or uri)
    files = [f for f in all_files if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under pool.uri={uri!r}")
    keys = [f[len(root):].lstrip("/") if f.startswith(root + "/") else None for f in files]
    outside = [f for f, k in zip(files, keys, strict=True) if k is None]
    if outside:
        raise ValueError(f"pool.root={root!r} does not hold pool.uri's images (e.g. "
                         f"{outside[0]!r}): set pool.root to a folder above them")
    check_unique(keys, what=f"image folder {uri}")
    labels_uri = _labels_uri(pool, root, all_files)
    if labels_uri:
        names = _names_from_csv(labels_uri, root, keys, pool)
    else:
        names = np.asarray([k.split("/", 1)[0] if "/" in k else "" for k in keys], dtype=object)
    classes, labels = class_index(names, getattr(pool, "classes", None))
    if limit is not None:
        files, keys, labels = files[:limit], keys[:limit], labels[:limit]
    tasks = [
        {"uris": files[s: s + shard_size],
         "frame_ids": keys[s: s + shard_size],
         "labels": labels[s: s + shard_size].tolist()}
        for s in range(0, len(files), shard_size)
    ]
    return PoolListing(tasks=tasks, classes=classes, root=root,
                       labeled=int((labels >= 0).sum()))


def decode_image(data: bytes, size: int, channels: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Decode, convert and resize one image.

    Returns:
        ``[size, size, channels]`` uint8 pixels, and the source's ``(height, width, channels)``
        (channels 1 for grayscale modes, else 3).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        src = (img.height, img.width, 1 if img.mode in _GRAY_MODES else 3)
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(size, size, channels), src


def _decode(data: bytes, size: int, channels: int) -> np.ndarray:
    return decode_image(data, size, channels)[0]


def decode_files(uris: list[str], size: int, channels: int, read=read_bytes
                 ) -> tuple[list[bytes], list[str], np.ndarray]:
    """Decode image files: pixels (b"" if failed), errors ("" if fine), ``[n, 3]`` source
    shapes (zeros where failed)."""
    images, errors = [], []
    src = np.zeros((len(uris), 3), dtype=np.int32)
    for i, uri in enumerate(uris):  # per-file decode is inherent: each file is its own object
        try:
            arr, src[i] = decode_image(read(uri), size, channels)
            images.append(arr.tobytes())
            errors.append("")
        except Exception as err:  # noqa: BLE001 - any read/decoder failure marks the frame failed
            images.append(b"")
            errors.append(f"cannot decode {uri}: {type(err).__name__}: {err}")
    return images, errors, src


def read_image_files(task: dict, *, input_size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode one work item of image files (a Ray Data work item)."""
    images, errors, src = decode_files(task["uris"], input_size, channels)
    keys = [str(k) for k in task["frame_ids"]]
    return make_batch(
        frame_id=keys,
        source_uri=list(task["uris"]),
        source_id=[parent(k) for k in keys],
        frame_index=np.asarray([frame_number(k) for k in keys], dtype=np.int64),
        timestamp_ms=np.zeros(len(keys), dtype=np.int64),
        images=images,
        shape=(input_size, input_size, channels),
        gt_label=np.asarray(task["labels"], dtype=np.int64),
        error=errors,
        src_shape=src,
    )
