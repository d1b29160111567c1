"""Manifest pools: a Parquet, CSV or JSONL table listing image or video URIs.

Columns: ``uri`` (required; ``s3://``, ``file://``, absolute, or relative to the manifest's
folder) and optionally ``source_id``, ``drive_id``, ``camera``, ``frame_index``,
``timestamp_ms`` and ``label`` (a class name or number, for simulation: it goes to the
ground-truth table, never to the pool's labels). Video rows are decoded like
:mod:`alray.sources.video` (a video's ``label`` applies to all its frames); image rows like
:mod:`alray.sources.image_prefix`.

A video's ``source_id`` is the ``source_id`` column, else ``<drive_id>/<camera>/<file name>``
when either is given, else the URI without its scheme. An image's ``source_id`` defaults the
same way to its folder, and its ``frame_index`` to the last number in its file name.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray.sources._common import VIDEO_SUFFIXES, frame_number, pack, unpack
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


def _source_ids(table: pa.Table, uris: list[str], images: np.ndarray) -> list[str]:
    given = _column(table, "source_id", "")
    drive = _column(table, "drive_id", "")
    cam = _column(table, "camera", "")
    out = []
    for u, g, d, c, img in zip(uris, given, drive, cam, images, strict=True):  # listing, driver
        name = u.split("://", 1)[-1]
        folder, file = name.rsplit("/", 1) if "/" in name else ("", name)
        if g:
            out.append(str(g))
        elif d or c:
            out.append("/".join(str(x) for x in (d, c, "" if img else file) if x))
        else:
            out.append(folder if img else name)
    return out


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
    raw = _column(table, "label", None)
    classes = sorted({str(x) for x in raw if x is not None and str(x) != ""})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(str(x), -1) if x is not None else -1 for x in raw]
    sources = _source_ids(table, uris, image)
    fidx = _column(table, "frame_index", None)
    ts = _column(table, "timestamp_ms", 0)
    tasks = [pack(video_task(uris[i], sources[i], pool=pool, label=labels[i], limit=limit))
             for i in np.flatnonzero(video)]
    rows = np.flatnonzero(image)[:limit] if limit else np.flatnonzero(image)
    for s in range(0, rows.size, shard_size):  # per shard
        r = rows[s: s + shard_size]
        tasks.append(pack(image_task(
            [uris[i] for i in r], [sources[i] for i in r],
            [frame_number(uris[i]) if fidx[i] is None else int(fidx[i]) for i in r],
            [int(ts[i]) for i in r], [labels[i] for i in r])))
    return PoolListing(tasks=tasks, classes=classes)


def read_manifest_item(task: dict, *, input_size: int,
                       channels: int) -> Iterator[dict[str, np.ndarray]]:
    """Decode one manifest work item (a video, or a shard of images)."""
    item = unpack(task)
    if item["kind"] == "video":
        yield from decode_video(item, input_size=input_size, channels=channels)
    else:
        yield read_image_items(item, input_size=input_size, channels=channels)
