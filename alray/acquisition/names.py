"""The names of every score and strategy, without importing numpy or torch.

Configs are checked against these when they load, so a typo fails in well under a second
instead of after torch's import. ``tests/acquisition/test_names.py`` keeps them equal to what
the registries hold once the strategies are imported.
"""

from __future__ import annotations

__all__ = ["SCORES", "SELECTORS", "STOCHASTIC_KINDS", "STRATEGY_ALIASES", "strategy_names"]

#: Per-sample scores over MC-dropout probabilities ``[N, T, C]`` (higher = more informative).
SCORES: tuple[str, ...] = (
    "least_confidence",
    "margin",
    "ratio",
    "entropy",
    "bald",
    "variation_ratio",
    "mean_std",
)

#: Batch selectors registered under their own name (not built from a score).
SELECTORS: tuple[str, ...] = ("badge", "batchbald", "cluster_margin", "kcenter", "random",
                              "typiclust")

#: Stochastic batch acquisition kinds; each is registered as ``<kind>:<score>``.
STOCHASTIC_KINDS: tuple[str, ...] = ("power", "softmax", "softrank")

#: Extra names: every score alone means ``topk:<score>``; these are the others.
STRATEGY_ALIASES: dict[str, str] = {"powerbald": "power:bald"}


def strategy_names() -> list[str]:
    """Every name :func:`alray.acquisition.select` accepts, aliases included, sorted."""
    built = [f"{kind}:{s}" for s in SCORES for kind in ("topk", *STOCHASTIC_KINDS)]
    return sorted({*SELECTORS, *built, *SCORES, *STRATEGY_ALIASES})
