"""Manifest pools: a Parquet, CSV or JSONL table listing image or video URIs.

Columns: ``uri`` (required; ``s3://``, ``file://``, absolute, or relative to the manifest's
folder) and optionally ``source_id``, ``drive_id``, ``camera``, ``frame_index``,
``timestamp_ms`` and ``label`` (a class name or number, for simulation: it goes to the
ground-truth table, never to the pool's labels). Video rows are decoded like
:mod:`alray.sources.video` (a video's ``label`` applies to all its frames); image rows like
:mod:`alray.sources.image_prefix`.

Frame ids are each row's path relative to the pool root (``pool.root``, default: the
manifest's own folder), plus ``:<frame index>`` for video frames, so they survive moving the
data with its manifest. A row outside the root, or two rows for one file, is refused with the
rows named. ``source_id`` (grouping only, not identity) is the ``source_id`` column, else
``<drive_id>/<camera>[/<file name>]`` when either is given, else the video's relative path or
the image's relative folder. An image's ``frame_index`` is the ``frame_index`` column, else
the last number in its file name (an ordering hint, 0 if none).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray.sources._common import (
    VIDEO_SUFFIXES,
    check_unique,
    frame_number,
    pack,
    parent,
    pool_root,
    relative_keys,
    unpack,
)
from alray.sources.base import PoolListing
from alray.sources.image_folder import IMAGE_SUFFIXES
from alray.sources.image_prefix import image_task, read_image_items
from alray.sources.video import decode_video, video_task
from alray.storage.uri import open_input, resolve

__all__ = ["MANIFEST_SUFFIXES", "list_manifest", "read_manifest", "read_manifest_item"]

MANIFEST_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json", ".ndjson")


def read_manifest(uri: str) -> pa.Table:
    """Read a manifest table; relative ``uri`` values are resolved against its folder.

    Raises:
        ValueError: unknown extension, or no ``uri`` column (names the file).
        FileNotFoundError: the manifest does not exist.
    """
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    low = uri.lower()
    if not low.endswith(MANIFEST_SUFFIXES):
        raise ValueError(f"pool.uri={uri!r}: a manifest must end in {', '.join(MANIFEST_SUFFIXES)}")
    try:
        with open_input(uri) as f:
            if low.endswith(".parquet"):
                table = pq.read_table(f)
            elif low.endswith(".csv"):
                table = pcsv.read_csv(f, convert_options=pcsv.ConvertOptions(
                    column_types={"uri": pa.string(), "label": pa.string(),
                                  "source_id": pa.string()}))
            else:
                table = pjson.read_json(f)
    except (FileNotFoundError, OSError) as err:
        if isinstance(err, FileNotFoundError) or "not found" in str(err).lower():
            raise FileNotFoundError(f"pool.uri={uri!r}: manifest not found ({err})") from None
        raise
    if "uri" not in table.column_names:
        raise ValueError(f"manifest {uri}: needs a 'uri' column, got {table.column_names}")
    base = uri.rsplit("/", 1)[0] if "://" in uri else resolve(uri)[1].rsplit("/", 1)[0]
    uris = pc.cast(table["uri"], pa.string())
    absolute = pc.or_(pc.match_substring(uris, "://"), pc.starts_with(uris, "/"))
    joined = pc.binary_join_element_wise(base, uris, "/")
    return table.set_column(table.schema.get_field_index("uri"), "uri",
                            pc.if_else(absolute, uris, joined))


def _column(table: pa.Table, name: str, default) -> list:
    if name not in table.column_names:
        return [default] * table.num_rows
    return [default if v is None else v for v in table[name].to_pylist()]


def _source_ids(table: pa.Table, keys: list[str], images: np.ndarray) -> list[str]:
    given = _column(table, "source_id", "")
    drive = _column(table, "drive_id", "")
    cam = _column(table, "camera", "")
    out = []
    for k, g, d, c, img in zip(keys, given, drive, cam, images, strict=True):  # listing, driver
        if g:
            out.append(str(g))
        elif d or c:
            out.append("/".join(str(x) for x in (d, c, "" if img else k.rsplit("/", 1)[-1]) if x))
        else:
            out.append(parent(k) if img else k)
    return out


def _keys(uri: str, uris: list[str], pool) -> tuple[str, list[str]]:
    """The pool root and each row's path under it (the frame ids' base)."""
    given = getattr(pool, "root", None)
    root = pool_root(given or (uri.rsplit("/", 1)[0] if "://" in uri else
                               pool_root(uri).rsplit("/", 1)[0]))
    keys = relative_keys(uris, root)
    outside = [i for i, k in enumerate(keys) if k is None]
    if outside:
        rows = ", ".join(f"row {i} ({uris[i]!r})" for i in outside[:5])
        raise ValueError(
            f"manifest {uri}: {len(outside)} row(s) lie outside the pool root {root!r}, e.g. "
            f"{rows}; frame ids are paths relative to the root, so set pool.root to a folder "
            "or s3:// prefix that holds every row (or write the rows relative to the manifest)")
    check_unique(keys, what=f"manifest {uri} (rows naming one file)")
    return root, keys


def list_manifest(uri: str, *, limit: int | None = None, pool=None,
                  shard_size: int = 256) -> PoolListing:
    """Turn a manifest into work items: one per video, one per ``shard_size`` images.

    Raises:
        ValueError: a row's URI is neither an image nor a video (names the row).
    """
    table = read_manifest(uri)
    uris = table["uri"].to_pylist()
    low = pc.utf8_lower(table["uri"])
    is_video = pc.ends_with(low, VIDEO_SUFFIXES[0])
    for suf in VIDEO_SUFFIXES[1:]:
        is_video = pc.or_(is_video, pc.ends_with(low, suf))
    is_image = pc.ends_with(low, IMAGE_SUFFIXES[0])
    for suf in IMAGE_SUFFIXES[1:]:
        is_image = pc.or_(is_image, pc.ends_with(low, suf))
    video, image = np.asarray(is_video), np.asarray(is_image)
    bad = np.flatnonzero(~video & ~image)
    if bad.size:
        raise ValueError(f"manifest {uri}: row {int(bad[0])} uri={uris[bad[0]]!r} is neither a "
                         f"video ({', '.join(VIDEO_SUFFIXES)}) nor an image")
    from alray.sources.classes import class_index

    root, keys = _keys(uri, uris, pool)
    raw = [None if x is None else str(x) for x in _column(table, "label", None)]
    classes, codes = class_index(raw, getattr(pool, "classes", None))
    labels = codes.tolist()
    sources = _source_ids(table, keys, image)
    fidx = _column(table, "frame_index", None)
    ts = _column(table, "timestamp_ms", 0)
    tasks = [pack(video_task(uris[i], sources[i], key=keys[i], pool=pool, label=labels[i],
                             limit=limit))
             for i in np.flatnonzero(video)]
    rows = np.flatnonzero(image)[:limit] if limit else np.flatnonzero(image)
    for s in range(0, rows.size, shard_size):  # per shard
        r = rows[s: s + shard_size]
        tasks.append(pack(image_task(
            [uris[i] for i in r], [keys[i] for i in r], [sources[i] for i in r],
            [frame_number(keys[i]) if fidx[i] is None else int(fidx[i]) for i in r],
            [int(ts[i]) for i in r], [labels[i] for i in r])))
    return PoolListing(tasks=tasks, classes=classes, root=root, labeled=int((codes >= 0).sum()))


def read_manifest_item(task: dict, *, input_size: int,
                       channels: int) -> Iterator[dict[str, np.ndarray]]:
    """Decode one manifest work item (a video, or a shard of images)."""
    item = unpack(task)
    if item["kind"] == "video":
        yield from decode_video(item, input_size=input_size, channels=channels)
    else:
        yield read_image_items(item, input_size=input_size, channels=channels)
