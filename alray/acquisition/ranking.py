"""Score-ranking selectors: top-k, random and stochastic batch acquisition.

References:
    1. Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron, Gal.
       "Stochastic Batch Acquisition: A Simple Baseline for Deep Active
       Learning". TMLR 2023 (arXiv:2106.12059, 2021).
    2. Kool, van Hoof, Welling. "Stochastic Beams and Where to Find Them: The
       Gumbel-Top-k Trick". ICML 2019.
"""

from __future__ import annotations

import numpy as np

from alray.acquisition._validation import check_float
from alray.acquisition.base import Pool, RankingSelector, strategy_registry, top_order
from alray.acquisition.names import STOCHASTIC_KINDS, STRATEGY_ALIASES
from alray.acquisition.scores import SCORES

__all__ = ["RandomSelector", "StochasticSelector", "TopKSelector"]


class TopKSelector(RankingSelector):
    """The ``k`` highest-scoring available rows (ties: lower row first).

    Args:
        score: Score name from :data:`~alray.acquisition.scores.SCORES`; used to
            compute scores from ``probs`` when ``scores`` is not passed.
    """

    requires = frozenset({"probs"})
    accepts_scores = True

    def __init__(self, score: str) -> None:
        self.score = score

    def rank(self, pool: Pool, *, full: bool) -> np.ndarray:
        rows = np.flatnonzero(pool.available)
        values = pool.get_scores(self.score)[rows]
        return top_order(values, rows, None if full else pool.k)


@strategy_registry.register("random")
class RandomSelector(RankingSelector):
    """Uniformly random available rows, from ``np.random.default_rng(seed)``."""

    requires = frozenset()

    def rank(self, pool: Pool, *, full: bool) -> np.ndarray:
        rows = np.flatnonzero(pool.available)
        rng = np.random.default_rng(pool.seed)
        if full:
            return rng.permutation(rows)
        return rng.choice(rows, size=min(pool.k, rows.size), replace=False)


class StochasticSelector(RankingSelector):
    """Sample a batch without replacement with probability growing with the score.

    ``power``: ``p_i ∝ s_i^β`` (scores clipped at 0); ``softmax``:
    ``p_i ∝ exp(β s_i)``; ``softrank``: ``p_i ∝ rank_i^{-β}``. Sampling uses the
    Gumbel-top-k trick (one perturbation of all log-weights, then top-k), which
    is exactly sequential sampling without replacement. PowerBALD is
    ``power`` on BALD.

    Args:
        score: Score name from :data:`~alray.acquisition.scores.SCORES`.
        kind: ``"power"``, ``"softmax"`` or ``"softrank"``.
        beta: Inverse temperature ``β >= 0`` (``0`` is uniform random, large
            ``β`` approaches top-k). Default 1, as in the paper.
    """

    requires = frozenset({"probs"})
    accepts_scores = True

    def __init__(self, score: str, kind: str, beta: float = 1.0) -> None:
        if kind not in ("power", "softmax", "softrank"):
            raise ValueError(f"kind={kind!r}: must be 'power', 'softmax' or 'softrank'")
        self.score = score
        self.kind = kind
        self.beta = check_float(beta, "beta", min_value=0.0)

    def log_weights(self, s: np.ndarray) -> np.ndarray:
        """Unnormalised log sampling weights.

        Args:
            s: ``float32[M]`` scores (``-inf`` allowed).

        Returns:
            ``float64[M]`` log-weights.
        """
        s = s.astype(np.float64)
        if self.kind == "softmax":
            return (
                self.beta * np.where(np.isfinite(s), s, -np.inf) if self.beta else np.zeros_like(s)
            )
        if self.kind == "power":
            with np.errstate(divide="ignore"):
                logs = np.log(np.clip(np.nan_to_num(s, neginf=0.0), 0.0, None))
            if not self.beta:
                return np.zeros_like(s)
            # zero scores get a weight below every positive one, still sampled last at random
            floor = np.min(logs[np.isfinite(logs)], initial=0.0) - 745.0
            return self.beta * np.where(np.isfinite(logs), logs, floor)
        ranks = np.empty(s.size, dtype=np.float64)
        ranks[top_order(s, np.arange(s.size), None)] = np.arange(1, s.size + 1)
        return -self.beta * np.log(ranks)

    def rank(self, pool: Pool, *, full: bool) -> np.ndarray:
        rows = np.flatnonzero(pool.available)
        logw = self.log_weights(pool.get_scores(self.score)[rows])
        gumbel = pool.rng(1).gumbel(size=rows.size)
        keys = logw + gumbel
        keys[~np.isfinite(keys)] = -np.inf
        return top_order(keys, rows, None if full else pool.k)


for _name in SCORES:
    strategy_registry.register(f"topk:{_name}", TopKSelector, score=_name)
    strategy_registry.alias(_name, f"topk:{_name}")
    for _kind in STOCHASTIC_KINDS:
        strategy_registry.register(f"{_kind}:{_name}", StochasticSelector, score=_name, kind=_kind)
for _alias, _target in STRATEGY_ALIASES.items():
    strategy_registry.alias(_alias, _target)
