"""Chunked k-means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alray.acquisition.kmeans import assign, kmeans


def test_recovers_separated_blobs():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, 5)) * 20
    y = rng.integers(0, 6, 3000)
    x = torch.from_numpy((mu[y] + rng.normal(size=(3000, 5))).astype(np.float32))
    cent, labels = kmeans(x, 6, rng=np.random.default_rng(1), fit_sample=1000)
    assert cent.shape == (6, 5)
    # one-to-one mapping between true and found clusters
    pairs = set(zip(y.tolist(), labels.tolist(), strict=True))
    assert len(pairs) == 6
    lab2, d2 = assign(x, cent)
    assert torch.equal(lab2, labels) and (d2 >= 0).all()


def test_deterministic_and_capped():
    x = torch.randn(50, 3)
    a = kmeans(x, 80, rng=np.random.default_rng(2))[1]
    b = kmeans(x, 80, rng=np.random.default_rng(2))[1]
    assert torch.equal(a, b) and int(a.max()) < 50
    with pytest.raises(ValueError, match="n_clusters=0"):
        kmeans(x, 0, rng=np.random.default_rng(0))
