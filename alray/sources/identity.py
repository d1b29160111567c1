"""Frame identity at the project level: the pool root recorded once per store, the id scheme
an existing store was built with, and a vectorised hash of frame ids (the split draw).

See DESIGN.md "Frame identity": ids are paths relative to the pool root, so the recorded root
is informational (where the data was last ingested from); moving the data changes the root,
never an id.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pyarrow as pa

__all__ = ["FRAME_ID_SCHEME", "POOL_META_KEY", "hash_ids", "record_pool"]

log = logging.getLogger(__name__)

#: Stored in the store's ``meta`` table under :data:`POOL_META_KEY` with the pool root.
FRAME_ID_SCHEME = "relative-path/1"
POOL_META_KEY = "pool"
_P = np.uint64(0x100000001B3)  # FNV-64 prime (odd)


def hash_ids(ids: np.ndarray | list[str], seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each id's UTF-8 bytes, vectorised (no loop over ids).

    A polynomial hash of the bytes (mod 2^64) mixed with the length and the seed, then
    SplitMix64's finaliser, so the bits are uniform and an id hashes the same in any batch.

    Args:
        ids: ``[N]`` strings.
        seed: the draw's seed.

    Returns:
        ``[N]`` uint64.
    """
    arr = pa.array(np.asarray(ids, dtype=object), pa.large_string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: n + 1]
    data = (np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None
            else np.zeros(0, np.uint8))[offsets[0]: offsets[-1]]
    lengths = np.diff(offsets)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        if data.size:
            row = np.repeat(np.arange(n), lengths)
            pos = np.arange(data.size) - np.repeat(offsets[:-1] - offsets[0], lengths)
            powers = np.cumprod(np.concatenate([[np.uint64(1)],
                                                np.full(int(lengths.max()), _P, np.uint64)]))
            contrib = (data.astype(np.uint64) + np.uint64(1)) * powers[lengths[row] - 1 - pos]
            nonempty = lengths > 0
            h[nonempty] = np.add.reduceat(contrib, (offsets[:-1] - offsets[0])[nonempty])
        salt = np.uint64(int.from_bytes(hashlib.blake2b(f"split:{seed}".encode(), digest_size=8)
                                        .digest(), "little"))
        z = h + lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + salt
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def record_pool(store, fmt: str, root: str) -> list[str]:
    """Check the store's frame-id scheme and record the pool root (once per project; again
    only when the data moved).

    Args:
        store: the project ``Store``.
        fmt: ``pool.format``.
        root: the listing's pool root.

    Returns:
        Notices for the user (the root moved).

    Raises:
        ValueError: the store holds frames ingested with an earlier id scheme (ids built from
            the folder name and a number parsed out of the file name): re-ingesting would
            duplicate every frame under a new id.
    """
    meta = store.get_meta(POOL_META_KEY)
    scheme = (meta or {}).get("frame_ids")
    if (meta is None and store.has_frames()) or (meta is not None and scheme != FRAME_ID_SCHEME):
        raise ValueError(
            f"store {store.uri!r} holds frames ingested with an earlier frame-id scheme "
            f"({scheme or '<folder>:<number from the file name>'}; this alray uses "
            f"{FRAME_ID_SCHEME!r}: paths relative to the pool root). Re-ingesting would add every "
            "frame again under a new id, so nothing was ingested. Start a new store "
            "(storage.uri, or alray run --out) for this pool; the old store stays readable.")
    notices = []
    if meta is not None and meta.get("root") != root:
        notices.append(f"pool root moved: {meta.get('root')} -> {root}; frame ids are relative "
                       "to the root, so every id, split and label carries over")
    if meta is None or meta.get("root") != root or meta.get("format") != fmt:
        store.set_meta(POOL_META_KEY, {"root": root, "format": fmt, "frame_ids": FRAME_ID_SCHEME})
    return notices
