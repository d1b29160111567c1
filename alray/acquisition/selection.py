"""The public entry points: :func:`select`, :func:`available`, :func:`requirements`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from alray.acquisition._validation import (
    as_bool_mask,
    as_tensor,
    check_int,
    resolve_device,
)
from alray.acquisition.base import Pool, strategy_registry
from alray.acquisition.constraints import VideoConstraint
from alray.acquisition.scores import probs_dtype

__all__ = ["accepts_scores", "available", "create", "requirements", "select"]

INPUTS = ("scores", "probs", "embeddings")


def available(pattern: str | None = None) -> list[str]:
    """Names :func:`select` accepts, aliases included (e.g. ``"bald"`` = ``"topk:bald"``).

    Args:
        pattern: Optional fnmatch filter, e.g. ``"topk:*"``.

    Returns:
        Sorted strategy names.
    """
    return strategy_registry.names(pattern)


def create(strategy: str, **options: Any):
    """Build the selector registered under ``strategy`` with its options.

    Args:
        strategy: A name from :func:`available`.
        **options: Strategy options (see each selector's docstring).

    Returns:
        A :class:`~alray.acquisition.base.Selector`.

    Raises:
        ValueError: On an unknown strategy or a bad option value.
        TypeError: On an option the strategy does not take.
    """
    return strategy_registry.create(strategy, **options)


def requirements(strategy: str) -> set[str]:
    """Arrays :func:`select` needs for ``strategy``, among ``{"scores", "probs", "embeddings"}``.

    ``probs`` means MC probabilities ``[N, T, C]``. For strategies where
    :func:`accepts_scores` is true (``topk:*``, ``power:*``, ``softmax:*``,
    ``softrank:*`` and their aliases) a precomputed ``scores`` array may be
    passed instead of ``probs``; the set returned here names ``probs`` because
    that is what a pipeline computes.

    Args:
        strategy: A name from :func:`available`.

    Returns:
        The required input names, e.g. ``{"embeddings"}`` for ``kcenter``,
        ``{"probs", "embeddings"}`` for ``badge`` and ``set()`` for ``random``.

    Raises:
        ValueError: On an unknown strategy.
    """
    factory, _ = strategy_registry.entry(strategy)
    return set(factory.requires)


def accepts_scores(strategy: str) -> bool:
    """Whether ``scores [N]`` may replace ``probs`` for ``strategy``.

    Args:
        strategy: A name from :func:`available`.

    Returns:
        ``True`` for score-ranking strategies.
    """
    factory, _ = strategy_registry.entry(strategy)
    return bool(factory.accepts_scores)


def _pool_size(**arrays: Any) -> int:
    sizes = {}
    for name, arr in arrays.items():
        if arr is None:
            continue
        shape = getattr(arr, "shape", None)
        if shape is None:
            shape = np.shape(arr)
        if len(shape) == 0:
            raise ValueError(f"{name}: must have a leading pool axis of length N")
        sizes[name] = int(shape[0])
    if not sizes:
        raise ValueError(
            "cannot tell the pool size N: pass labeled (bool[N]) or one of scores, probs, "
            "embeddings, groups"
        )
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in sizes.items())
        raise ValueError(f"inputs disagree on the pool size N: {detail}")
    return next(iter(sizes.values()))


def select(
    strategy: str,
    *,
    k: int,
    scores: np.ndarray | torch.Tensor | None = None,
    probs: np.ndarray | torch.Tensor | None = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
    labeled: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    timestamps_ms: np.ndarray | None = None,
    min_gap_ms: float | None = None,
    max_per_group: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **options: Any,
) -> np.ndarray:
    """Choose ``k`` pool rows to label next.

    Args:
        strategy: A name from :func:`available`: ``topk:<score>`` (or the bare
            score name), ``random``, ``kcenter``, ``badge``, ``batchbald``,
            ``power:<score>``/``powerbald``, ``softmax:<score>``,
            ``softrank:<score>``, ``cluster_margin``, ``typiclust``.
        k: Rows wanted, ``>= 1``; ``min(k, available)`` are returned.
        scores: ``float32[N]`` per-row scores, higher = more informative
            (score-ranking strategies only; replaces ``probs``).
        probs: ``float32[N, T, C]`` MC-dropout class probabilities.
        embeddings: ``float32[N, D]`` features (penultimate layer for ``badge``).
        labeled: ``bool[N]``, rows already labeled; never returned.
        groups: ``[N]`` group key per row (e.g. source video) for the video constraint.
        timestamps_ms: ``[N]`` frame timestamps in ms, needed with ``min_gap_ms``.
        min_gap_ms: Two returned rows of one group are at least this far apart.
        max_per_group: At most this many returned rows per group.
        seed: Seeds every random choice; same inputs and seed give the same answer.
        device: Torch device for the heavy math (``"cpu"``, ``"cuda"``).
        **options: Strategy options, e.g. ``beta`` (stochastic), ``num_candidates``
            (batchbald), ``half`` (kcenter); see each selector.

    Returns:
        ``int64[min(k, available)]`` distinct row indices in pick order, none of
        them labeled. With the video constraint, fewer are returned only when
        no further row satisfies it.

    Raises:
        ValueError: On an unknown strategy, ``k < 1``, a missing required input,
            inconsistent shapes or a bad option value.

    Example:
        >>> s = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
        >>> select("entropy", k=2, scores=s, labeled=np.array([0, 1, 0, 0], bool)).tolist()
        [3, 2]
    """
    selector = create(strategy, **options)
    k = check_int(k, "k", min_value=1)
    seed = check_int(seed, "seed", min_value=0)
    dev = resolve_device(device)
    n = _pool_size(
        scores=scores,
        probs=probs,
        embeddings=embeddings,
        labeled=labeled,
        groups=groups,
        timestamps_ms=timestamps_ms,
    )
    needs = selector.needs()
    if selector.accepts_scores and scores is not None:
        needs.discard("probs")
    given = {"scores": scores, "probs": probs, "embeddings": embeddings}
    missing = sorted(name for name in needs if given[name] is None)
    if missing:
        alt = " (or scores)" if selector.accepts_scores else ""
        raise ValueError(f"strategy {strategy!r} needs {', '.join(missing)}{alt}")
    labeled_mask = as_bool_mask(labeled, "labeled", n)
    score_arr = None
    if scores is not None and selector.accepts_scores:
        score_arr = as_tensor(scores, "scores", ndim=(1,)).cpu().numpy()
    prob_t = None
    if probs is not None and "probs" in needs:
        prob_t = as_tensor(probs, "probs", ndim=(2, 3), dtype=probs_dtype(probs)).cpu()
        if prob_t.ndim == 2:
            prob_t = prob_t[:, None, :]
    emb_t = None
    if embeddings is not None and "embeddings" in needs:
        emb_t = as_tensor(embeddings, "embeddings", ndim=(2,)).to(dev)
        if not bool(torch.isfinite(emb_t.sum(dim=1)).all()):  # O(N) memory check
            raise ValueError("embeddings: must be finite (no NaN/inf)")
    pool = Pool(
        k=k,
        n=n,
        available=~labeled_mask,
        labeled=labeled_mask,
        scores=score_arr,
        probs=prob_t,
        embeddings=emb_t,
        constraint=VideoConstraint.build(n, groups, timestamps_ms, min_gap_ms, max_per_group),
        seed=seed,
        device=dev,
    )
    if pool.n_available == 0:
        return np.empty(0, dtype=np.int64)
    picks = np.asarray(selector.select(pool), dtype=np.int64)
    if picks.size != np.unique(picks).size or labeled_mask[picks].any():
        # a bug in the strategy, not bad input
        raise RuntimeError(f"strategy {strategy!r} broke the selection contract")
    return picks
