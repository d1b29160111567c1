"""Frames like a given one: nearest neighbours of its stored embedding in ``frames``.

Search is exact (a flat scan of ``frames.embedding``) until :func:`ensure_ann_index` builds a
LanceDB IVF-PQ index (cosine), which it does once ``pool.ann_min_rows`` frames have embeddings.
Rows appended after the index was built are still searched (by a flat scan of them).
"""

from __future__ import annotations

import logging

from alray.storage import Store, sql_list

__all__ = ["ensure_ann_index", "similar_frames"]

log = logging.getLogger(__name__)
_COLUMNS = ["frame_id", "source_id", "source_uri", "frame_index", "timestamp_ms", "split",
            "status", "score"]


def ensure_ann_index(store: Store, min_rows: int = 50_000) -> bool:
    """Build the IVF-PQ index on ``frames.embedding`` once it is large; True if one exists.

    Args:
        store: The project store.
        min_rows: Frames with an embedding needed before an index is worth building.
    """
    from alray.pipeline.dedup import _ivf_pq

    table = store.frames
    if any("embedding" in (ix.columns or []) for ix in table.list_indices()):
        return True
    n = store.count_frames("embedding IS NOT NULL")
    if n < min_rows:
        return False
    table.create_index("embedding", config=_ivf_pq(n, store.embedding_dim()))
    log.info("built IVF-PQ index on frames.embedding over %d frames", n)
    return True


def similar_frames(store: Store, frame_id: str, k: int = 10) -> list[dict]:
    """The ``k`` frames most similar to ``frame_id`` (cosine over stored embeddings).

    Args:
        store: The project store.
        frame_id: The query frame (``<source_id>:<frame_index>``).
        k: How many neighbours to return (the query frame itself is excluded).

    Returns:
        Dicts with ``frame_id``, ``source_id``, ``source_uri``, ``frame_index``,
        ``timestamp_ms``, ``split``, ``status``, ``score`` and ``similarity`` (cosine, higher is
        closer), most similar first.

    Raises:
        ValueError: ``k < 1``, or the frame has no embedding yet (score a round first).
        LookupError: no frame ``frame_id``.
    """
    if k < 1:
        raise ValueError(f"k={k}: must be >= 1")
    if not store.has_frames():
        raise LookupError(f"frame {frame_id!r} not found (the project has no frames)")
    key = sql_list([frame_id])[1:-1]
    rows = store.frames.search().where(f"frame_id = {key}").select(["embedding"]).limit(1)
    rows = rows.to_arrow()
    if rows.num_rows == 0:
        raise LookupError(f"frame {frame_id!r} not found")
    vec = rows["embedding"][0].as_py()
    if vec is None:
        raise ValueError(f"frame {frame_id!r} has no embedding yet: score a round (or ingest "
                         "with pool.embed_on_ingest and model.freeze_backbone) first")
    res = (store.frames.search(vec, vector_column_name="embedding").metric("cosine")
           .where(f"frame_id != {key} AND embedding IS NOT NULL", prefilter=True)
           .select([*_COLUMNS, "_distance"]).limit(k).to_arrow())
    out = []
    for r in res.to_pylist():  # k rows
        r["similarity"] = 1.0 - float(r.pop("_distance"))
        out.append({c: r[c] for c in [*_COLUMNS, "similarity"]})
    return out
