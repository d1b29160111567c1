"""Acquisition core: per-sample scores and batch selectors (numpy/torch only).

Public surface::

    score(name, probs) -> float32[N]              # SCORES lists the names
    select(strategy, *, k, scores=None, probs=None, embeddings=None, labeled=None,
           groups=None, timestamps_ms=None, min_gap_ms=None, max_per_group=None,
           seed=0, device="cpu", **options) -> int64[min(k, available)]
    available() -> list[str]; requirements(strategy) -> set[str]

The package imports lazily: the first use of a public name imports every strategy module
(registering them) and torch; ``alray.acquisition.names`` alone stays free of numpy and torch,
so configs are checked without either.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SCORES",
    "Pool",
    "Selector",
    "Scorer",
    "VideoConstraint",
    "accepts_scores",
    "available",
    "create",
    "near_taken",
    "requirements",
    "score",
    "select",
]

#: Public name -> the module that defines it.
_HOMES = {
    "SCORES": "names", "Pool": "base", "Selector": "base", "Scorer": "scores",
    "score": "scores", "VideoConstraint": "constraints", "near_taken": "constraints",
    "accepts_scores": "selection", "available": "selection", "create": "selection",
    "requirements": "selection", "select": "selection",
}
#: Modules whose import registers strategies.
_REGISTERING = ("badge", "batchbald", "cluster", "kcenter", "ranking")


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for mod in _REGISTERING:
        importlib.import_module(f"{__name__}.{mod}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
