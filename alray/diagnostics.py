"""Per-round monitoring diagnostics (pure numpy).

These follow the usual active-learning monitoring advice: is the strategy still finding frames
the model is unsure about (labeled vs unlabeled scores), did retraining reshuffle the ranking
(top-k overlap), is the batch class-balanced, and was anything re-selected (must be 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_balance", "score_gap", "topk_overlap"]


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


def class_balance(labels: np.ndarray, num_classes: int) -> dict[str, object]:
    """Class counts of a batch and their normalised entropy (1 = perfectly balanced)."""
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=num_classes)
    total = counts.sum()
    if total == 0 or num_classes < 2:
        return {"class_counts": counts.tolist(), "class_entropy": None}
    p = counts[counts > 0] / total
    return {"class_counts": counts.tolist(),
            "class_entropy": float(-(p * np.log(p)).sum() / np.log(num_classes))}
