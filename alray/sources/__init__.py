"""Pool readers, by ``pool.format``; see :mod:`alray.sources.base` for the record contract.

A reader is a pair: ``list(uri, *, limit[, pool]) -> PoolListing`` (runs on the driver, cheap;
listers that take ``pool`` get the ``PoolConfig``: video sampling, labels file and columns,
``classes``, ``root``; the listing names the pool root its frame ids are relative to) and
``read(task, *, input_size, channels) -> batch`` (runs in Ray Data tasks; it may also *yield*
batches, so a long video streams). Register new formats with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable

from alray.sources.base import PoolListing
from alray.sources.idx import list_idx, read_idx_shard
from alray.sources.image_folder import list_image_folder, read_image_files
from alray.sources.image_prefix import list_image_prefix, read_image_items
from alray.sources.manifest import list_manifest, read_manifest_item
from alray.sources.video import list_videos, read_video

__all__ = ["PoolListing", "available_sources", "get_source", "register_source"]

_SOURCES: dict[str, tuple[Callable[..., PoolListing], Callable[..., dict]]] = {}


def register_source(fmt: str, lister: Callable[..., PoolListing],
                    reader: Callable[..., dict]) -> None:
    """Register a pool format; a duplicate name raises ``ValueError``."""
    if fmt in _SOURCES:
        raise ValueError(f"pool.format {fmt!r} is already registered")
    _SOURCES[fmt] = (lister, reader)


def available_sources() -> list[str]:
    return sorted(_SOURCES)


def get_source(fmt: str) -> tuple[Callable[..., PoolListing], Callable[..., dict]]:
    """The (lister, reader) pair of a format; unknown names list the valid ones."""
    try:
        return _SOURCES[fmt]
    except KeyError:
        raise ValueError(f"pool.format={fmt!r}: expected one of {available_sources()}") from None


register_source("idx", list_idx, read_idx_shard)
register_source("image_folder", list_image_folder, read_image_files)
register_source("video", list_videos, read_video)
register_source("image_prefix", list_image_prefix, read_image_items)
register_source("manifest", list_manifest, read_manifest_item)
