"""Shared fixtures: small, well-conditioned pools."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def make_pool(n: int = 300, t: int = 6, c: int = 4, d: int = 8, seed: int = 0):
    """Probabilities consistent with a linear head on clustered features.

    Returns:
        ``(probs float32[n, t, c], embeddings float32[n, d])``.
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(c, d)) * 2.0
    y = rng.integers(0, c, n)
    emb = (mu[y] + rng.normal(size=(n, d))).astype(np.float32)
    w = mu / 2.0
    logits = emb @ w.T
    noise = rng.normal(size=(n, t, c)) * 1.5
    z = logits[:, None, :] * 0.5 + noise
    z -= z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    return p.astype(np.float32), emb


@pytest.fixture
def pool():
    return make_pool()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run these small-array tests single-threaded: on a busy 2-core machine OpenMP
    spin-waiting makes tiny multi-threaded kernels 10-30x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
