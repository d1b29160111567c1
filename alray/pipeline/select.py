"""Select a round's batch and record it: in ``frames`` (status ``selected``,
``selected_round``) and in the ``selections`` table (rank, score, strategy, checkpoint).

Re-running is safe: if the round already has selected frames, nothing new is selected; the
selection record is written before the frames are marked, replacing any earlier record of the
round, so a crash between the two writes leaves a round that selects again and records again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray import acquisition
from alray.config import ProjectConfig
from alray.storage import Store, sql_list
from alray.storage.schema import FrameStatus
from alray.storage.store import frame_filter

__all__ = ["attach_selection", "balanced_seed", "mark_selected", "pick", "record_selection",
           "selected_in_round", "video_groups"]


def selected_in_round(store: Store, round_n: int) -> list[str]:
    """Frame ids selected in ``round_n`` (sorted)."""
    return store.read_frames([], f"selected_round = {int(round_n)}")["frame_id"].to_pylist()


def mark_selected(store: Store, frame_ids: np.ndarray, round_n: int) -> int:
    """Mark frames selected in ``round_n``; return how many were already selected or labeled.

    Raises:
        RuntimeError: a frame was already selected/labeled (the never-reselect invariant); the
            store is left unchanged.
    """
    ids = [str(f) for f in frame_ids]
    if not ids:
        return 0
    prior = store.count_frames(frame_filter(exclude=FrameStatus.UNLABELED,
                                            also=f"frame_id IN {sql_list(ids)}"))
    if prior:
        raise RuntimeError(f"round {round_n}: {prior} of the {len(ids)} picked frames were "
                           "already selected or labeled; refusing to re-select")
    store.update_frames(pa.table({
        "frame_id": pa.array(ids, pa.string()),
        "status": pa.array([FrameStatus.SELECTED.value] * len(ids), pa.string()),
        "selected_round": pa.array(np.full(len(ids), round_n, dtype=np.int64)),
    }))
    return prior


def pick(strategy: str, *, k: int, frame_ids: np.ndarray, labeled: np.ndarray, seed: int,
         scores: np.ndarray | None = None, probs: np.ndarray | None = None,
         embeddings: np.ndarray | None = None, **video: Any) -> np.ndarray:
    """Run a strategy over candidate arrays and return the picked rows, in pick order.

    Args:
        strategy: A name from :func:`alray.acquisition.available`.
        k: Rows wanted (``0``: none).
        frame_ids: ``[N]`` candidate ids (only their count is used).
        labeled: ``bool[N]`` rows already selected or labeled (never picked).
        seed: Seed of the strategy's random choices.
        scores, probs, embeddings: The strategy's inputs (see :func:`alray.acquisition.select`).
        **video: ``groups``, ``timestamps_ms``, ``min_gap_ms``, ``max_per_group`` (the video
            constraint), passed through.

    Returns:
        ``int64[<= k]`` row indices into the candidate arrays.
    """
    if k <= 0 or len(frame_ids) == 0:
        return np.empty(0, dtype=np.int64)
    return acquisition.select(strategy, k=k, scores=scores, probs=probs, embeddings=embeddings,
                              labeled=labeled, seed=seed, **video)


def video_groups(cfg: ProjectConfig, source_id: np.ndarray, source_uri: np.ndarray
                 ) -> np.ndarray:
    """The group of each frame for ``acquisition.video`` (``[N]`` strings).

    ``group_by: source_id`` uses the frames' ``source_id``; any other name is a column of the
    manifest at ``pool.uri``, looked up by each frame's ``source_uri`` (frames the manifest does
    not list fall back to their ``source_id``).

    Raises:
        ValueError: the column is not ``source_id`` and the pool is not a manifest, or the
            manifest has no such column (names ``acquisition.video.group_by``).
    """
    col = cfg.acquisition.video.group_by
    sid = np.asarray(source_id, dtype=object).astype(str)
    if col == "source_id":
        return sid
    if cfg.pool.format != "manifest":
        raise ValueError(f"acquisition.video.group_by={col!r}: only 'source_id' is available "
                         f"for pool.format={cfg.pool.format!r} (other names are manifest "
                         "columns)")
    from alray.sources.manifest import read_manifest

    table = read_manifest(cfg.pool.uri)
    if col not in table.column_names:
        raise ValueError(f"acquisition.video.group_by={col!r}: the manifest {cfg.pool.uri} has "
                         f"no such column (it has {table.column_names})")
    pos = pc.index_in(pa.array(np.asarray(source_uri, dtype=object), pa.string()),
                      value_set=table["uri"].combine_chunks())
    vals = pc.take(pc.cast(table[col], pa.string()).combine_chunks(), pos)  # null: not listed
    out = np.asarray(vals.to_pylist(), dtype=object)
    missing = np.equal(out, None)
    out[missing] = sid[missing]
    return out.astype(str)


def record_selection(store: Store, round_n: int, frame_ids: np.ndarray, *, strategy: str,
                     scores: np.ndarray | None, score_name: str | None,
                     checkpoint_uri: str | None) -> None:
    """Write round ``round_n``'s selection record (``frame_ids`` in pick order)."""
    n = len(frame_ids)
    store.put_selection(round_n, pa.table({
        "frame_id": pa.array([str(f) for f in frame_ids], pa.string()),
        "rank": pa.array(np.arange(n, dtype=np.int64)),
        "score": (pa.nulls(n, pa.float32()) if scores is None
                  else pa.array(np.asarray(scores, dtype=np.float32))),
        "score_name": pa.array([score_name if scores is not None else None] * n, pa.string()),
        "strategy": pa.array([strategy] * n, pa.string()),
        "checkpoint_uri": pa.array([checkpoint_uri] * n, pa.string()),
        "selected_at": pa.array(np.full(n, time.time())),
    }))


def attach_selection(store: Store, round_n: int, rows: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Add ``rank``, ``score``, ``score_name``, ``strategy`` and ``checkpoint_uri`` from round
    ``round_n``'s selection record to export rows (``None`` where the round has no record,
    e.g. a project selected before records were kept)."""
    rec = {r["frame_id"]: r for r in store.selections(round_n).to_pylist()}
    keys = ("rank", "score", "score_name", "strategy", "checkpoint_uri")
    for row in rows:
        r = rec.get(row["frame_id"], {})
        row.update({k: r.get(k) for k in keys})
    return rows


def balanced_seed(store: Store, ids: np.ndarray, taken: np.ndarray, per_class: int,
                  seed: int) -> np.ndarray:
    """Rows of ``ids`` for a balanced seed set: ``per_class`` untaken frames of each class
    (fewer where a class has fewer), drawn at random within each class from the ground truth.

    Raises:
        ValueError: the pool has no ground truth (names ``loop.initial_per_class``).
    """
    gt = store.ground_truth([str(f) for f in np.asarray(ids)[~taken]])
    if not gt:
        raise ValueError(f"loop.initial_per_class={per_class}: needs the pool's ground-truth "
                         "labels to balance the seed set, and this pool has none; use "
                         "loop.initial_labels (a random seed set) instead")
    gt_ids = np.asarray(list(gt), dtype=object)
    gt_lab = np.fromiter(gt.values(), dtype=np.int64, count=len(gt))
    order = np.argsort(gt_ids)
    gt_ids, gt_lab = gt_ids[order], gt_lab[order]
    pos = np.minimum(np.searchsorted(gt_ids, ids), len(gt_ids) - 1)
    label = np.where((gt_ids[pos] == ids) & ~taken, gt_lab[pos], -1)  # [N], -1: not a candidate
    rng = np.random.default_rng([seed, 0])
    cand = rng.permutation(np.flatnonzero(label >= 0))
    cand = cand[np.argsort(label[cand], kind="stable")]  # by class, random within a class
    lab = label[cand]
    rank = np.arange(cand.size) - np.searchsorted(lab, lab, side="left")
    keep = rank < per_class
    return cand[keep][np.lexsort((lab[keep], rank[keep]))]  # one of each class, then again
