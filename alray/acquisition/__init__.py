"""Acquisition core: per-sample scores and batch selectors (numpy/torch only).

Public surface::

    score(name, probs) -> float32[N]              # SCORES lists the names
    select(strategy, *, k, scores=None, probs=None, embeddings=None, labeled=None,
           groups=None, timestamps_ms=None, min_gap_ms=None, max_per_group=None,
           seed=0, device="cpu", **options) -> int64[min(k, available)]
    available() -> list[str]; requirements(strategy) -> set[str]

Importing this package registers every strategy.
"""

from alray.acquisition import badge as _badge  # noqa: F401  (registers strategies)
from alray.acquisition import batchbald as _batchbald  # noqa: F401
from alray.acquisition import cluster as _cluster  # noqa: F401
from alray.acquisition import kcenter as _kcenter  # noqa: F401
from alray.acquisition import ranking as _ranking  # noqa: F401
from alray.acquisition.base import Pool, Selector
from alray.acquisition.constraints import VideoConstraint, near_taken
from alray.acquisition.scores import SCORES, Scorer, score
from alray.acquisition.selection import (
    accepts_scores,
    available,
    create,
    requirements,
    select,
)

__all__ = [
    "SCORES",
    "Pool",
    "Scorer",
    "Selector",
    "VideoConstraint",
    "accepts_scores",
    "available",
    "create",
    "near_taken",
    "requirements",
    "score",
    "select",
]
