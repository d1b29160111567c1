"""Stopping rules, checked after every training step. Pure functions over the round history."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["stop_reason"]


def stop_reason(history: Sequence[dict], *, max_rounds: int, label_budget: int | None,
                target_accuracy: float | None, plateau_rounds: int | None,
                plateau_epsilon: float, pool_left: int) -> str | None:
    """Why the loop should stop now, or ``None`` to go on.

    Args:
        history: per completed round (oldest first) a dict with ``round``, ``labels`` and
            ``val_accuracy``.
        max_rounds: acquisition rounds allowed after the seed round (round 0).
        label_budget: total labels allowed (``None``: no budget).
        target_accuracy: stop once val accuracy reaches it (``None``: off).
        plateau_rounds: stop when the val gain stayed below ``plateau_epsilon`` for this many
            consecutive rounds (``None``: off).
        plateau_epsilon: the gain threshold of the plateau rule.
        pool_left: unlabeled pool frames still selectable.

    Returns:
        A short machine-readable reason (``"label_budget"``, ``"max_rounds"``,
        ``"target_accuracy"``, ``"plateau"``, ``"pool_exhausted"``) or ``None``.
    """
    if not history:
        return None
    last = history[-1]
    if target_accuracy is not None and last.get("val_accuracy", 0.0) >= target_accuracy:
        return "target_accuracy"
    if label_budget is not None and last.get("labels", 0) >= label_budget:
        return "label_budget"
    if last.get("round", 0) >= max_rounds:
        return "max_rounds"
    if pool_left <= 0:
        return "pool_exhausted"
    if plateau_rounds is not None and len(history) > plateau_rounds:
        acc = [h.get("val_accuracy", 0.0) for h in history[-(plateau_rounds + 1):]]
        gains = [b - a for a, b in zip(acc, acc[1:], strict=False)]
        if all(g < plateau_epsilon for g in gains):
            return "plateau"
    return None
