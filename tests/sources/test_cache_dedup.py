"""Embedding cache, near-duplicate collapsing and the similar-frames query, end to end:
real dashcam clips → Ray Data ingest (with embeddings) → rounds → LanceDB."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from alray.models import backbone_fingerprint, model_for
from alray.pipeline.dedup import collapse, non_representatives
from alray.pipeline.embed_actor import ScoringActor
from alray.pipeline.embed_cache import CACHE_KEY
from alray.pipeline.ingest import ingest
from alray.pipeline.score import score_frames
from alray.pipeline.similar import ensure_ann_index, similar_frames
from alray.rounds import RoundController
from alray.storage import Store
from tests.sources.conftest import CUT, VIDEOS, WHITE, video_config

THRESHOLD = 0.97


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_collapse_within_and_across_clips():
    rng = np.random.default_rng(0)
    scenes = rng.normal(size=(6, 16))
    # clip a: scenes 0,1,2 (20 frames each); clip b: scenes 3,0 (scene 0 again); clip c: 4,5,4
    plan = {"a": [0, 1, 2], "b": [3, 0], "c": [4, 5, 4]}
    emb, src, idx = [], [], []
    for clip, order in plan.items():
        for k, s in enumerate(order):
            emb.append(scenes[s] + 0.01 * rng.normal(size=(20, 16)))
            src += [clip] * 20
            idx += list(range(k * 20, k * 20 + 20))
    emb = np.concatenate(emb)
    perm = rng.permutation(len(emb))  # input order must not matter
    rep = collapse(emb[perm], np.array(src)[perm], np.array(idx)[perm], threshold=THRESHOLD)
    reps = np.flatnonzero(rep == np.arange(len(rep)))
    assert len(reps) == 6  # one per distinct scene, across clips and within clip c
    u = _unit(emb[perm][reps])
    sims = u @ u.T
    np.fill_diagonal(sims, 0)
    assert sims.max() <= THRESHOLD
    members = _unit(emb[perm]) @ _unit(emb[perm])[rep].T
    assert (np.diag(members) > THRESHOLD).all()  # every frame is close to its representative
    with pytest.raises(ValueError, match="threshold"):
        collapse(emb, np.array(src), np.array(idx), threshold=0)


@pytest.fixture(scope="module")
def cached_project(ray_session, tmp_path_factory, frozen_weights):
    """Two labelled clips (manifest), frozen backbone, embedded at ingest, 1 round run."""
    tmp = tmp_path_factory.mktemp("cached")
    (tmp / "m.csv").write_text(f"uri,source_id,label\n{VIDEOS / CUT},{CUT},highway\n"
                               f"{VIDEOS / WHITE},{WHITE},lanes\n")
    cfg = video_config(tmp, tmp / "m.csv", **{
        "pool.format": "manifest", "pool.root": str(VIDEOS),  # rows outside the manifest's folder
        "pool.embed_on_ingest": True, "model.freeze_backbone": True,
        "model.weights_uri": str(frozen_weights), "model.num_classes": None,
        "pool.dedup_threshold": THRESHOLD, "loop.max_rounds": 1, "acquisition.strategy": "bald"})
    store = Store(cfg.storage.uri)
    summary = ingest(cfg, store)
    RoundController(cfg, store).run()
    return cfg, store, summary


def test_ingest_stores_embeddings_and_rounds_rescore_from_cache(cached_project):
    cfg, store, summary = cached_project
    assert summary.frames_added == 297 and summary.failed == 0
    assert store.count_frames("embedding IS NULL") == 0
    fp = backbone_fingerprint(model_for(cfg.model, None, 2, cfg.seed))
    assert store.get_meta(CACHE_KEY) == fp
    r1 = store.get_round(1)
    assert r1["state"] in ("COMPLETED", "STOPPED")
    d = r1["diagnostics"]
    assert d["embedding_cache"] is True and d["embedded_frames"] == 0  # no pixel touched
    # The cached vectors are what the round's backbone computes from the pixels.
    t = store.read_frames(["image", "height", "width", "channels", "embedding"],
                          "frame_id IN ('solidWhiteRight.mp4:5', 'project_video_cut.mp4:70')")
    actor = ScoringActor(cfg.model, store.get_round(0)["checkpoint_uri"])
    fresh = actor({k: np.asarray(t[k].to_pylist(), dtype=object) for k in
                   ("image", "height", "width", "channels")})["embedding"]
    stored = np.asarray(t["embedding"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(fresh, stored, rtol=1e-4, atol=1e-5)


def test_trainable_backbone_reembeds_and_agrees(cached_project):
    cfg, store, _ = cached_project
    ckpt = store.get_round(1)["checkpoint_uri"]
    ids = store.read_frames([], "split = 'pool'")["frame_id"].to_pylist()[:40]
    cached = score_frames(cfg, store, ckpt, seed=0, want_probs=True, candidate_ids=ids)
    fresh = score_frames(cfg.with_overrides(**{"model.freeze_backbone": False}), store, ckpt,
                       seed=0, want_probs=True, candidate_ids=ids)
    assert cached.timing["cached"] and "cached" not in fresh.timing
    assert list(cached.frame_ids) == list(fresh.frame_ids)
    np.testing.assert_allclose(cached.embeddings, fresh.embeddings, rtol=1e-4, atol=1e-5)
    # Same model, same seed: the same T masks, so the same MC probabilities either way.
    assert cached.probs.shape == fresh.probs.shape == (40, cfg.model.mc_samples, 2)
    np.testing.assert_allclose(cached.probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cached.probs, fresh.probs, rtol=1e-4, atol=1e-5)
    assert cached.mc_masks == fresh.mc_masks == {"seed": 0, "samples": 4, "layers": "head",
                                                 "p": cfg.model.dropout_p}


def test_selected_batch_has_no_near_duplicates(cached_project):
    cfg, store, _ = cached_project
    dups = non_representatives(store)
    assert store.get_round(1)["diagnostics"]["near_duplicates"] == len(dups) > 50
    chosen = store.read_frames(["embedding"], "selected_round = 1")
    ids = chosen["frame_id"].to_pylist()
    # Fewer than batch_size may be left: a group holding a frame labeled in round 0 offers
    # no member (alray.pipeline.dedup), and how many that removes depends on the split draw.
    assert 0 < len(ids) <= cfg.acquisition.batch_size and not set(ids) & set(dups)
    u = _unit(np.asarray(chosen["embedding"].to_pylist(), dtype=np.float32))
    sims = u @ u.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= THRESHOLD


def test_similar_frames_exact_then_indexed(cached_project):
    _, store, _ = cached_project
    hits = similar_frames(store, "solidWhiteRight.mp4:100", k=5)
    assert len(hits) == 5 and all(h["frame_id"] != "solidWhiteRight.mp4:100" for h in hits)
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True) and sims[0] > 0.9
    assert abs(hits[0]["frame_index"] - 100) <= 10 and hits[0]["source_id"] == WHITE
    assert not ensure_ann_index(store, 10_000)  # small table: exact search
    assert ensure_ann_index(store, 256)  # IVF-PQ from here on
    indexed = similar_frames(store, "solidWhiteRight.mp4:100", k=5)
    assert indexed[0]["source_id"] == WHITE and abs(indexed[0]["frame_index"] - 100) <= 10
    with pytest.raises(LookupError, match="nope:1"):
        similar_frames(store, "nope:1")
    with pytest.raises(ValueError, match="k=0"):
        similar_frames(store, "solidWhiteRight.mp4:100", k=0)
    store.update_frames(pa.table({"frame_id": ["solidWhiteRight.mp4:0"],
                                  "score": pa.array([0.5], pa.float32())}))
    assert similar_frames(store, "solidWhiteRight.mp4:0", k=1)


def test_cli_similar_verb(cached_project, tmp_path, capsys):
    import argparse
    import json

    import yaml

    from alray.pipeline.cli_video import add_commands

    cfg, _, _ = cached_project
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"storage": {"uri": cfg.storage.uri}}))
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["similar", str(path), f"{CUT}:40", "-k", "3", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frame_id"] == f"{CUT}:40" and len(out["similar"]) == 3
    assert out["similar"][0]["source_id"] == CUT
    bad = parser.parse_args(["similar", str(path), "missing:0"])
    with pytest.raises(ValueError, match="missing:0"):
        bad.func(bad)
