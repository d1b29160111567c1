"""Selector base class, the validated selection context and the strategy registry."""

from __future__ import annotations

import abc
import dataclasses
import warnings
from typing import ClassVar

import numpy as np
import torch

from alray.acquisition.constraints import VideoConstraint, take_ranked
from alray.acquisition.registry import Registry
from alray.acquisition.scores import score as compute_score

__all__ = ["Pool", "Selector", "strategy_registry"]

strategy_registry: Registry[Selector] = Registry("strategy")


@dataclasses.dataclass
class Pool:
    """Validated inputs of one selection call.

    Attributes:
        k: Rows wanted (``min(k, available)`` are returned).
        n: Pool size ``N``.
        available: ``bool[N]``, rows that may be returned (not labeled).
        labeled: ``bool[N]``, labeled rows (``~available``).
        scores: ``float32[N]`` precomputed scores or ``None``.
        probs: ``[N, T, C]`` CPU tensor (float32 or float64) or ``None``.
        embeddings: ``[N, D]`` float32 tensor (CPU or ``device``) or ``None``.
        constraint: Video constraint or ``None``.
        seed: Seed of every random choice.
        device: Torch device for the heavy math.
    """

    k: int
    n: int
    available: np.ndarray
    labeled: np.ndarray
    scores: np.ndarray | None
    probs: torch.Tensor | None
    embeddings: torch.Tensor | None
    constraint: VideoConstraint | None
    seed: int
    device: torch.device

    @property
    def n_available(self) -> int:
        """Number of rows that may be returned."""
        return int(self.available.sum())

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A generator derived from ``seed`` only.

        Args:
            stream: Independent sub-stream id, so two uses never share draws.

        Returns:
            ``np.random.Generator``.
        """
        return np.random.default_rng([self.seed, stream])

    def get_scores(self, name: str) -> np.ndarray:
        """Scores ``float32[N]`` (given ones if passed, else computed from ``probs``).

        Non-finite scores are replaced by ``-inf`` (lowest priority), with a warning.

        Args:
            name: Score name used when computing from ``probs``.

        Returns:
            ``float32[N]``.

        Raises:
            ValueError: If neither ``scores`` nor ``probs`` was given.
        """
        if self.scores is not None:
            s = self.scores
        elif self.probs is not None:
            s = compute_score(name, self.probs, device=self.device)
        else:
            raise ValueError(f"scores or probs: needed to compute the {name!r} score")
        bad = ~np.isfinite(s)
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} non-finite scores were given the lowest priority",
                RuntimeWarning,
                stacklevel=3,
            )
            s = np.where(bad, -np.inf, s).astype(np.float32)
        return s


class Selector(abc.ABC):
    """One batch-selection strategy.

    ``__init__`` only stores and validates options; :meth:`select` does the work.
    Subclasses declare which arrays they need in :attr:`requires`; a strategy
    with :attr:`accepts_scores` may be given precomputed ``scores`` instead of
    ``probs``.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    accepts_scores: ClassVar[bool] = False

    def needs(self) -> set[str]:
        """Inputs this configured instance needs (a subset of :attr:`requires`)."""
        return set(self.requires)

    @abc.abstractmethod
    def select(self, pool: Pool) -> np.ndarray:
        """Pick rows.

        Args:
            pool: Validated inputs.

        Returns:
            ``int64[min(k, available)]`` distinct available rows in pick order
            (fewer only when the video constraint leaves nothing else).
        """


class RankingSelector(Selector):
    """A selector defined by a priority order over available rows.

    The video constraint is applied by :func:`take_ranked` on that order.
    """

    @abc.abstractmethod
    def rank(self, pool: Pool, *, full: bool) -> np.ndarray:
        """Priority order of available rows, best first.

        Args:
            pool: Validated inputs.
            full: Whether the order must cover all available rows (needed when
                a constraint may reject rows); otherwise the first ``k`` suffice.

        Returns:
            ``int64[M]`` distinct available rows.
        """

    def select(self, pool: Pool) -> np.ndarray:
        order = self.rank(pool, full=pool.constraint is not None)
        return take_ranked(order, pool.k, pool.constraint, pool.available)


def top_order(values: np.ndarray, rows: np.ndarray, k: int | None) -> np.ndarray:
    """Rows sorted by descending value, ties by ascending row; only the top ``k`` if given.

    Uses one ``argpartition`` (``O(M)``) before sorting the ``k`` winners.

    Args:
        values: ``[M]`` values of ``rows``.
        rows: ``int64[M]`` ascending row indices.
        k: Length of the head wanted, or ``None`` for the full order.

    Returns:
        ``int64[min(k, M)]`` (or ``[M]``) rows.
    """
    m = values.size
    if k is not None and k < m:
        kth = np.partition(values, m - k)[m - k]
        above = np.flatnonzero(values > kth)
        ties = np.flatnonzero(values == kth)[: k - above.size]
        keep = np.concatenate([above, ties])
        if keep.size < k:  # NaN-free inputs never get here; keep the contract anyway
            keep = np.argsort(-values, kind="stable")[:k]
        values, rows = values[keep], rows[keep]
    order = np.lexsort((rows, -values.astype(np.float64)))
    return rows[order]
