"""Per-round monitoring diagnostics (pure numpy).

These follow the usual active-learning monitoring advice: is the strategy still finding frames
the model is unsure about (labeled vs unlabeled scores), did retraining reshuffle the ranking
(top-k overlap), is the batch class-balanced, and was anything re-selected (must be 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_balance", "paired_topk_overlap", "score_gap", "topk_overlap"]


def score_gap(scores: np.ndarray, labeled: np.ndarray) -> dict[str, float | None]:
    """Mean score of labeled vs unlabeled frames (``scores`` [N], ``labeled`` bool [N])."""
    lab, unl = scores[labeled], scores[~labeled]
    return {
        "mean_score_labeled": float(lab.mean()) if lab.size else None,
        "mean_score_unlabeled": float(unl.mean()) if unl.size else None,
    }


def topk_overlap(before: np.ndarray, after: np.ndarray, k: int) -> float | None:
    """Fraction of the top-k by ``before`` that is still in the top-k by ``after`` ([N] each).

    NaN entries of ``before`` (never scored) are ignored; ``None`` when nothing was scored.
    """
    valid = ~np.isnan(before)
    if k < 1 or valid.sum() < 1:
        return None
    idx = np.flatnonzero(valid)
    k = min(k, idx.size)
    top_b = idx[np.argpartition(-before[idx], k - 1)[:k]]
    top_a = idx[np.argpartition(-after[idx], k - 1)[:k]]
    return float(np.intersect1d(top_b, top_a).size / k)


def paired_topk_overlap(before_ids: np.ndarray, before: np.ndarray, ids: np.ndarray,
                        after: np.ndarray, k: int) -> tuple[float | None, int]:
    """:func:`topk_overlap` over only the frames two models both scored.

    Args:
        before_ids: ``[M]`` ids the earlier model scored, sorted.
        before: ``[M]`` their scores.
        ids: ``[N]`` ids the later model scored (any order).
        after: ``[N]`` their scores.
        k: top-k size; capped at a quarter of the common frames, so a small common set still
            measures a ranking rather than the set itself.

    Returns:
        ``(overlap, common frames)``; ``(None, 0)`` when none are common.
    """
    before_ids = np.asarray(before_ids)
    ids = np.asarray(ids)
    pos = np.searchsorted(before_ids, ids)
    both = pos < before_ids.size
    both[both] = before_ids[pos[both]] == ids[both]
    m = int(both.sum())
    if m == 0:
        return None, 0
    b = np.asarray(before, dtype=np.float64)[pos[both]]
    a = np.asarray(after, dtype=np.float64)[both]
    return topk_overlap(b, a, min(k, max(m // 4, 1))), m


def class_balance(labels: np.ndarray, num_classes: int) -> dict[str, object]:
    """Class counts of a batch and their normalised entropy (1 = perfectly balanced)."""
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=num_classes)
    total = counts.sum()
    if total == 0 or num_classes < 2:
        return {"class_counts": counts.tolist(), "class_entropy": None}
    p = counts[counts > 0] / total
    return {"class_counts": counts.tolist(),
            "class_entropy": float(-(p * np.log(p)).sum() / np.log(num_classes))}
