"""Scores against numpy reference formulas; chunked == in-memory; input forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alray.acquisition import SCORES, score
from alray.acquisition.scores import scorer_registry
from tests.acquisition.conftest import make_pool


def _entropy(p, axis):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)


def reference(name, p):
    p = p.astype(np.float64)
    pm = p.mean(axis=1)
    top = np.sort(pm, axis=1)[:, ::-1]
    if name == "least_confidence":
        return 1 - top[:, 0]
    if name == "margin":
        return 1 - (top[:, 0] - top[:, 1])
    if name == "ratio":
        return top[:, 1] / top[:, 0]
    if name == "entropy":
        return _entropy(pm, 1)
    if name == "bald":
        return _entropy(pm, 1) - _entropy(p, 2).mean(axis=1)
    if name == "variation_ratio":
        votes = p.argmax(axis=2)
        counts = np.stack([(votes == c).sum(axis=1) for c in range(p.shape[2])], axis=1)
        return 1 - counts.max(axis=1) / p.shape[1]
    if name == "mean_std":
        return p.std(axis=1).mean(axis=1)
    raise AssertionError(name)


@pytest.mark.parametrize("name", SCORES)
def test_matches_reference(name):
    p, _ = make_pool(n=200, t=7, c=5)
    got = score(name, p)
    assert got.dtype == np.float32 and got.shape == (200,)
    np.testing.assert_allclose(got, reference(name, p), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SCORES)
def test_streaming_equals_in_memory(name):
    p, _ = make_pool(n=257, t=4, c=3)
    np.testing.assert_array_equal(score(name, p, chunk_size=10), score(name, p, chunk_size=10**6))


@pytest.mark.parametrize("name", SCORES)
def test_higher_is_more_informative(name):
    sure = np.zeros((1, 4, 3), np.float32)
    sure[..., 0] = 1.0
    split = np.zeros((1, 4, 3), np.float32)
    split[0, :2, 0] = 1.0
    split[0, 2:, 1] = 1.0  # the MC samples disagree
    assert score(name, split)[0] > score(name, sure)[0]


@pytest.mark.parametrize("name", SCORES)
def test_input_forms(name):
    p, _ = make_pool(n=30, t=3, c=4)
    ref = score(name, p)
    np.testing.assert_allclose(score(name, torch.from_numpy(p)), ref, rtol=1e-6)
    np.testing.assert_allclose(score(name, p.astype(np.float64)), ref, rtol=1e-5, atol=1e-6)
    flat = score(name, p[:, 0])  # [N, C] is T = 1
    np.testing.assert_allclose(flat, score(name, p[:, :1]), rtol=1e-6)


def test_extra_axes_reduced():
    p, _ = make_pool(n=20, t=3, c=4)
    pix = np.stack([p, p[::-1]], axis=-1)  # [N, T, C, 2]
    a, b = score("entropy", p), score("entropy", p[::-1])
    np.testing.assert_allclose(score("entropy", pix), (a + b) / 2, rtol=1e-5)
    np.testing.assert_allclose(score("entropy", pix, reduction="max"), np.maximum(a, b), rtol=1e-5)
    np.testing.assert_allclose(score("entropy", pix, reduction=lambda s: s[:, 0]), a, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="Valid names"):
        score("entropie", np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="probs"):
        score("entropy", np.ones(3, np.float32))
    with pytest.raises(ValueError, match="reduction"):
        score("entropy", np.ones((2, 2, 2), np.float32), reduction="median")
    with pytest.raises(ValueError, match="probs"):
        score("entropy", [[0.5, 0.5]])
    with pytest.raises(ValueError, match="already registered"):
        scorer_registry.register("bald", object)


def test_bald_of_deterministic_model_is_zero():
    p, _ = make_pool(n=10, t=1, c=3)
    np.testing.assert_allclose(score("bald", p), 0.0, atol=1e-6)
