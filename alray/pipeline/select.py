"""Select a round's batch and record it in ``frames`` (status ``selected``, ``selected_round``).

Re-running is safe: if the round already has selected frames, nothing new is selected.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from alray import acquisition
from alray.storage import Store, sql_list
from alray.storage.schema import FrameStatus
from alray.storage.store import frame_filter

__all__ = ["mark_selected", "pick", "selected_in_round"]


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
         embeddings: np.ndarray | None = None) -> np.ndarray:
    """Run a strategy over candidate arrays and return the picked frame ids."""
    idx = acquisition.select(strategy, k=k, scores=scores, probs=probs, embeddings=embeddings,
                             labeled=labeled, seed=seed)
    return frame_ids[idx]
