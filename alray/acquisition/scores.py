"""Per-sample uncertainty scores from MC-dropout probabilities.

Every scorer maps probabilities ``[N, T, C]`` (``T`` stochastic forward passes,
``C`` classes) to ``float32[N]`` where **higher always means more informative**.
Extra trailing axes (pixels, boxes: ``[N, T, C, *extra]``) are scored
independently and reduced with a named reduction or any callable. Inputs are
processed in row chunks, so memory stays bounded whatever ``N`` is.

References:
    1. Gal, Islam, Ghahramani. "Deep Bayesian Active Learning with Image Data".
       ICML 2017 (BALD, variation ratios, max entropy).
    2. Houlsby et al. "Bayesian Active Learning for Classification and
       Preference Learning". arXiv:1112.5745, 2011 (BALD).
    3. Kampffmeyer et al. "Semantic Segmentation of Small Objects ...". CVPR-W
       2016 (mean standard deviation).
    4. Settles. "Active Learning Literature Survey". 2009 (least confidence,
       margin, ratio, entropy).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from alray.acquisition._validation import (
    as_tensor,
    check_int,
    resolve_device,
    rows_per_chunk,
)
from alray.acquisition.names import SCORES
from alray.acquisition.registry import Registry

__all__ = ["SCORES", "Scorer", "score", "scorer_registry"]

scorer_registry: Registry[Scorer] = Registry("score")

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda s: s.mean(dim=1),
    "max": lambda s: s.amax(dim=1),
    "min": lambda s: s.amin(dim=1),
    "sum": lambda s: s.sum(dim=1),
}


class Scorer(abc.ABC):
    """Base class: chunking, extra-axis reduction and dtype handling.

    :meth:`score` maps ``probs [N, T, C]`` to ``float32[N]``; subclasses implement
    only :meth:`compute`, the math on one chunk.

    Args:
        reduction: How scores over extra trailing axes are reduced to one value
            per row: ``"mean"``, ``"max"``, ``"min"``, ``"sum"`` or a callable
            mapping ``[n, E]`` to ``[n]``.
    """

    name: ClassVar[str]

    def __init__(self, reduction: str | Callable[[torch.Tensor], torch.Tensor] = "mean") -> None:
        if isinstance(reduction, str) and reduction not in REDUCTIONS:
            raise ValueError(
                f"reduction={reduction!r}: must be one of {sorted(REDUCTIONS)} or a callable"
            )
        self.reduction = REDUCTIONS[reduction] if isinstance(reduction, str) else reduction

    @abc.abstractmethod
    def compute(self, p: torch.Tensor) -> torch.Tensor:
        """Score one chunk.

        Args:
            p: Probabilities ``[n, T, C, E]`` (``E`` flattened extra axes, 1 if none).

        Returns:
            Scores ``[n, E]``, higher = more informative.
        """

    def __call__(self, probs: np.ndarray | torch.Tensor, **kwargs: Any) -> np.ndarray:
        """Same as :meth:`score`."""
        return self.score(probs, **kwargs)

    def score(
        self,
        probs: np.ndarray | torch.Tensor,
        *,
        chunk_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> np.ndarray:
        """Score every row of ``probs``.

        Args:
            probs: ``[N, T, C]``, ``[N, T, C, *extra]`` or ``[N, C]`` (read as ``T=1``).
            chunk_size: Rows per chunk; default keeps chunks near 32 MiB.
            device: Torch device the math runs on.

        Returns:
            ``float32[N]`` scores.
        """
        dev = resolve_device(device)
        p = as_tensor(probs, "probs", ndim=(2, 3, 4, 5, 6), dtype=probs_dtype(probs))
        if p.ndim == 2:
            p = p[:, None, :]
        n = p.shape[0]
        p = p.reshape(n, p.shape[1], p.shape[2], -1)  # [N, T, C, E]
        if p.shape[1] < 1 or p.shape[2] < 1:
            raise ValueError(f"probs: needs T >= 1 and C >= 1, got shape {tuple(p.shape)}")
        step = chunk_size or rows_per_chunk(int(np.prod(p.shape[1:])))
        check_int(step, "chunk_size", min_value=1)
        out = torch.empty(n, dtype=torch.float32)
        for start in range(0, n, step):
            chunk = p[start : start + step].to(dev, torch.float32, non_blocking=True)
            s = self.compute(chunk)  # [n, E]
            s = s[:, 0] if s.shape[1] == 1 else self.reduction(s)
            out[start : start + step] = s.float().cpu()
        return out.numpy()


def probs_dtype(probs: Any) -> torch.dtype:
    """Keep float64 inputs as they are (converted per chunk), else use float32."""
    is64 = getattr(probs, "dtype", None) in (np.float64, torch.float64)
    return torch.float64 if is64 else torch.float32


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(dim=dim)


def _top2(p_mean: torch.Tensor) -> torch.Tensor:
    # p_mean: [n, C, E] -> [n, 2, E] (largest first)
    if p_mean.shape[1] == 1:
        return torch.cat([p_mean, torch.zeros_like(p_mean)], dim=1)
    return torch.topk(p_mean, 2, dim=1).values


@scorer_registry.register("least_confidence")
class LeastConfidence(Scorer):
    """``1 - max_c p̄_c``: how unsure the mean prediction is."""

    name = "least_confidence"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        return 1.0 - p.mean(dim=1).amax(dim=1)


@scorer_registry.register("margin")
class Margin(Scorer):
    """``1 - (p̄_(1) - p̄_(2))``: a small gap between the top two classes is informative."""

    name = "margin"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        top2 = _top2(p.mean(dim=1))
        return 1.0 - (top2[:, 0] - top2[:, 1])


@scorer_registry.register("ratio")
class Ratio(Scorer):
    """``p̄_(2) / p̄_(1)`` in ``[0, 1]``: the runner-up close to the winner is informative."""

    name = "ratio"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        top2 = _top2(p.mean(dim=1))
        return top2[:, 1] / top2[:, 0].clamp_min(torch.finfo(p.dtype).tiny)


@scorer_registry.register("entropy")
class Entropy(Scorer):
    """``H[p̄]``: predictive entropy of the mean prediction (nats)."""

    name = "entropy"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        return _entropy(p.mean(dim=1), dim=1)


@scorer_registry.register("bald")
class Bald(Scorer):
    """``H[p̄] - E_t H[p_t]``: mutual information between label and weights (nats)."""

    name = "bald"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        return _entropy(p.mean(dim=1), dim=1) - _entropy(p, dim=2).mean(dim=1)


@scorer_registry.register("variation_ratio")
class VariationRatio(Scorer):
    """``1 - f_mode / T``: share of MC samples disagreeing with the modal class."""

    name = "variation_ratio"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        n, t, c, e = p.shape
        votes = p.argmax(dim=2)  # [n, T, E]
        counts = torch.zeros(n, c, e, dtype=torch.float32, device=p.device)
        counts.scatter_add_(1, votes, torch.ones_like(votes, dtype=torch.float32))
        return 1.0 - counts.amax(dim=1) / t


@scorer_registry.register("mean_std")
class MeanStd(Scorer):
    """``mean_c std_t p_t,c``: spread of the MC samples, averaged over classes."""

    name = "mean_std"

    def compute(self, p: torch.Tensor) -> torch.Tensor:
        return p.std(dim=1, correction=0).mean(dim=1)




def score(
    name: str,
    probs: np.ndarray | torch.Tensor,
    *,
    reduction: str | Callable[[torch.Tensor], torch.Tensor] = "mean",
    chunk_size: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Compute a per-sample score; higher = more informative.

    Args:
        name: One of :data:`SCORES`.
        probs: Class probabilities ``[N, T, C]`` from ``T`` MC-dropout passes
            (``[N, C]`` is read as ``T=1``; ``[N, T, C, *extra]`` is reduced over
            the extra axes with ``reduction``). numpy or torch.
        reduction: ``"mean"``, ``"max"``, ``"min"``, ``"sum"`` or a callable
            ``[n, E] -> [n]``, applied over extra axes only.
        chunk_size: Rows per chunk (default: about 32 MiB per chunk).
        device: Torch device the math runs on.

    Returns:
        ``float32[N]`` scores.

    Raises:
        ValueError: On an unknown score name or a malformed ``probs``.

    Example:
        >>> p = np.full((2, 4, 3), 1 / 3, dtype=np.float32)
        >>> score("entropy", p).round(4).tolist()
        [1.0986, 1.0986]
    """
    scorer = scorer_registry.create(name, reduction=reduction)
    return scorer(probs, chunk_size=chunk_size, device=device)
