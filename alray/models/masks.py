"""Consistent MC-dropout masks: ``T`` masks drawn once per scoring pass, shared by all frames.

BatchBALD's joint entropy compares frames under the *same* ``T`` posterior samples; a mask
drawn per frame (and per sample) makes two copies of one image look independent, so the
greedy batch fills with repeats. Masks come from a seeded generator, never the global RNG:
every actor of a pass, and the embedding cache, draw the same masks from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MCMasks", "draw_masks"]


@dataclass(frozen=True)
class MCMasks:
    """One scoring pass's dropout masks (kept entries scaled by ``1 / (1 - p)``).

    Attributes:
        seed: the seed they were drawn from (recorded in the round).
        head: ``[T, D]`` feature masks.
        sites: one ``[T, C_i]`` channel mask per backbone site (``mc_layers: all``), else ().
    """

    seed: int
    head: torch.Tensor
    sites: tuple[torch.Tensor, ...] = ()

    @property
    def samples(self) -> int:
        return int(self.head.shape[0])


def _bernoulli(gen: torch.Generator, shape: tuple[int, int], p: float) -> torch.Tensor:
    if not p:
        return torch.ones(shape)
    return (torch.rand(shape, generator=gen) >= p).float() / (1.0 - p)


def draw_masks(model, samples: int, seed: int) -> MCMasks:
    """Draw ``samples`` masks for ``model``'s dropout sites from ``seed``.

    Args:
        model: an :class:`~alray.models.MCDropoutClassifier` (``p``, ``feature_dim``,
            ``dropout_channels``).
        samples: ``T`` (``model.mc_samples``), >= 1.
        seed: any int; the same seed gives the same masks on every process.

    Raises:
        ValueError: ``samples < 1``.
    """
    if samples < 1:
        raise ValueError(f"model.mc_samples={samples}: must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    p = float(model.p)
    sites = tuple(_bernoulli(gen, (samples, c), p) for c in model.dropout_channels)
    return MCMasks(seed=int(seed), head=_bernoulli(gen, (samples, model.feature_dim), p),
                   sites=sites)
