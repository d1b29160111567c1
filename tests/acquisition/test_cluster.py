"""Cluster-Margin and TypiClust."""

from __future__ import annotations

import numpy as np
import torch

from alray.acquisition import select
from alray.acquisition.cluster import round_robin, typicality


def blobs(seed, n_per=60, k=5, d=4):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(k, d)) * 30
    y = np.repeat(np.arange(k), n_per)
    return (mu[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def test_round_robin_visits_small_clusters_first():
    labels = np.array([0, 0, 0, 1, 2, 2])
    order = round_robin(labels, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(6))
    seq = labels[order].tolist()
    assert seq[:3] == [1, 2, 0] and seq[3:5] == [2, 0] and seq[5] == 0


def test_cluster_margin_takes_uncertain_rows_from_every_cluster():
    x, y = blobs(0)
    margin = np.random.default_rng(1).random(len(y)).astype(np.float32)
    got = select("cluster_margin", k=5, scores=margin, embeddings=x, n_clusters=5)
    assert sorted(y[got].tolist()) == [0, 1, 2, 3, 4]
    cand = np.argsort(-margin)[:50]
    assert set(got.tolist()) <= set(cand.tolist())


def test_cluster_margin_with_given_clusters_needs_no_embeddings():
    _, y = blobs(1)
    margin = np.random.default_rng(2).random(len(y)).astype(np.float32)
    got = select("cluster_margin", k=5, scores=margin, clusters=y)
    assert sorted(y[got].tolist()) == [0, 1, 2, 3, 4]


def test_typicality_prefers_dense_rows():
    x = torch.tensor([[0.0], [0.1], [-0.1], [0.05], [5.0]])
    typ = typicality(x, torch.arange(5), n_neighbors=2)
    assert int(typ.argmax()) in (0, 3) and int(typ.argmin()) == 4


def test_typiclust_picks_one_typical_row_per_uncovered_cluster():
    x, y = blobs(2)
    labeled = np.zeros(len(y), bool)
    labeled[y == 0] = np.arange((y == 0).sum()) == 0  # one labeled row in cluster 0
    got = select("typiclust", k=4, embeddings=x, labeled=labeled)
    assert sorted(y[got].tolist()) == [1, 2, 3, 4]
    for i in got:
        members = x[y == y[i]]
        centre = members.mean(0)
        dist = np.linalg.norm(members - centre, axis=1)
        assert np.linalg.norm(x[i] - centre) <= np.quantile(dist, 0.5)
