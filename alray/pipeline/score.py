"""Score frames with a round's model: the one scoring path of ingest, rounds and the service.

Every scoring pass draws its ``T`` dropout masks once from ``seed`` and shares them across all
frames, whichever way the probabilities are computed (:mod:`alray.models.masks`); the pass's
mask record (:attr:`PoolScores.mc_masks`) goes into the round's diagnostics.

The embedding-cache rule (``meta[CACHE_KEY]`` = fingerprint of the backbone behind every
stored embedding, or None):

1. Stored embeddings stand in for the backbone only with ``model.freeze_backbone`` and
   ``model.mc_layers: head``: a trained backbone changes every round, and with ``all`` the
   backbone is itself stochastic (the T samples need T backbone passes).
2. Writing embeddings from backbone ``b`` (ingest, or re-scoring without the cache) keeps the
   key only if it already names ``b``, or names nothing and the store was empty; otherwise the
   key is cleared (the stored embeddings are mixed).
3. Scoring from the cache: when the key names this round's backbone, only frames without an
   embedding are embedded; otherwise every decoded frame is re-embedded first and the key set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import ray
import torch

from alray import acquisition
from alray.config import ProjectConfig
from alray.models import backbone_fingerprint, draw_masks, head_probs, model_for
from alray.pipeline.embed_actor import scoring_stage
from alray.pipeline.embed_cache import CACHE_KEY, embed_frames, stored_embeddings
from alray.pipeline.ray_runtime import frames_dataset
from alray.storage.schema import FrameStatus
from alray.storage.store import SCORABLE, Store, frame_filter, sql_list

__all__ = ["PoolScores", "cache_applies", "score_frames", "score_stream"]

log = logging.getLogger(__name__)


@dataclass
class PoolScores:
    """Scoring output over the candidate frames, in ``frame_id`` order.

    ``mc_masks`` records the pass's dropout masks: ``{"seed", "samples", "layers", "p"}``
    (the masks are re-drawn from it with :func:`alray.models.draw_masks`).
    """

    frame_ids: np.ndarray  # [N] str
    scores: np.ndarray  # [N] float32, higher = more informative
    embeddings: np.ndarray  # [N, D] float32
    probs: np.ndarray | None  # [N, T, C] float32, when requested
    timing: dict = field(default_factory=dict)
    mc_masks: dict = field(default_factory=dict)


def cache_applies(cfg: ProjectConfig) -> bool:
    """Rule 1: may stored embeddings stand in for the backbone when scoring?"""
    return cfg.model.freeze_backbone and cfg.model.mc_layers == "head"


def _note_embeddings_from(store: Store, fingerprint: str) -> None:
    """Rule 2: embeddings from backbone ``fingerprint`` are about to be stored."""
    cached = store.get_meta(CACHE_KEY)
    if cached is None and not store.has_frames():
        store.set_meta(CACHE_KEY, fingerprint)
    elif cached is not None and cached != fingerprint:
        store.set_meta(CACHE_KEY, None)


def _mask_record(cfg: ProjectConfig, seed: int) -> dict:
    return {"seed": int(seed), "samples": cfg.model.mc_samples, "layers": cfg.model.mc_layers,
            "p": cfg.model.dropout_p}


def score_stream(ds: ray.data.Dataset, cfg: ProjectConfig, store: Store,
                 checkpoint_uri: str | None, num_classes: int) -> ray.data.Dataset:
    """Add the scoring stage to ingest's decoded frames: embeddings always, and with a
    checkpoint the ``acquisition.score`` of each frame (masks seeded by ``cfg.seed``)."""
    model = model_for(cfg.model, checkpoint_uri, num_classes, cfg.seed)
    _note_embeddings_from(store, backbone_fingerprint(model))
    return scoring_stage(ds, cfg, checkpoint_uri=checkpoint_uri, num_classes=num_classes,
                         score_name=cfg.acquisition.score if checkpoint_uri else None,
                         mask_seed=cfg.seed, init_seed=cfg.seed)


def score_frames(cfg: ProjectConfig, store: Store, checkpoint_uri: str, *, seed: int,
                 want_probs: bool, candidate_ids: list[str] | None = None) -> PoolScores:
    """Score the pool's decodable frames (or only ``candidate_ids``) with a round's model.

    Args:
        cfg: the project config (``model``, ``acquisition.score`` and the actor resources).
        store: the project store.
        checkpoint_uri: the round's model.
        seed: seed of the pass's T dropout masks (the loop passes ``seed + round``).
        want_probs: also return the MC probabilities ``[N, T, C]``.
        candidate_ids: score only these frames.

    Raises:
        ValueError: no frame to score.
    """
    where = SCORABLE if candidate_ids is None else f"frame_id IN {sql_list(candidate_ids)}"
    t0 = time.perf_counter()
    out = (_score_cached if cache_applies(cfg) else _score_pixels)(
        cfg, store, checkpoint_uri, seed=seed, want_probs=want_probs, where=where)
    out.mc_masks = _mask_record(cfg, seed)
    out.timing["score_seconds"] = time.perf_counter() - t0
    log.info("scored %d frames in %.2fs (%s)", len(out.frame_ids), out.timing["score_seconds"],
             "cached embeddings" if out.timing.get("cached") else "pixels")
    return out


def _score_pixels(cfg: ProjectConfig, store: Store, checkpoint_uri: str, *, seed: int,
                  want_probs: bool, where: str) -> PoolScores:
    """The actor pool re-embeds the pixels and runs the MC samples (consistent masks)."""
    model = model_for(cfg.model, checkpoint_uri, 2, seed)
    _note_embeddings_from(store, backbone_fingerprint(model))  # rounds store what we return
    ds = scoring_stage(frames_dataset(cfg, store, where), cfg, checkpoint_uri=checkpoint_uri,
                       score_name=cfg.acquisition.score, want_probs=want_probs,
                       mask_seed=seed, keep=("frame_id",))
    ids, scores, embs, probs = [], [], [], []
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids.append(b["frame_id"].astype(str))
        scores.append(b["score"])
        embs.append(b["embedding"])
        if want_probs:
            probs.append(b["probs"])
    if not ids:
        raise ValueError("no frames to score: the pool is empty or every frame failed")
    frame_ids = np.concatenate(ids)
    order = np.argsort(frame_ids, kind="stable")  # blocks arrive in any order: sort by id
    return PoolScores(
        frame_ids=frame_ids[order].astype(object),
        scores=np.concatenate(scores)[order].astype(np.float32),
        embeddings=np.concatenate(embs)[order].astype(np.float32),
        probs=np.concatenate(probs)[order].astype(np.float32) if want_probs else None,
    )


def _score_cached(cfg: ProjectConfig, store: Store, checkpoint_uri: str, *, seed: int,
                  want_probs: bool, where: str, chunk: int = 16384) -> PoolScores:
    """Rule 3: refresh the cache, then run the head alone over the stored embeddings."""
    t0 = time.perf_counter()
    model = model_for(cfg.model, checkpoint_uri, 2, seed)
    fp = backbone_fingerprint(model)
    decoded = frame_filter(exclude=FrameStatus.FAILED)
    if store.get_meta(CACHE_KEY) != fp:
        store.set_meta(CACHE_KEY, None)  # a crash below leaves the cache marked invalid
        embedded = embed_frames(cfg, store, checkpoint_uri, where=decoded,
                                num_classes=model.num_classes)
        store.set_meta(CACHE_KEY, fp)
    else:
        embedded = embed_frames(cfg, store, checkpoint_uri, num_classes=model.num_classes,
                                where=frame_filter(exclude=FrameStatus.FAILED,
                                                   also="embedding IS NULL"))
    t1 = time.perf_counter()
    ids, emb = stored_embeddings(store, where)
    if ids.size == 0:
        raise ValueError("no frames to score: the pool is empty or every frame failed")
    masks = draw_masks(model, cfg.model.mc_samples, seed)
    scores, probs = [], []
    with torch.no_grad():
        for s in range(0, len(ids), chunk):  # chunks of frames, the same T masks for all
            p = head_probs(model, torch.from_numpy(emb[s: s + chunk]), masks)  # [B, T, C]
            scores.append(acquisition.score(cfg.acquisition.score, p).astype(np.float32))
            if want_probs:
                probs.append(p.numpy())
    out = PoolScores(frame_ids=ids, scores=np.concatenate(scores), embeddings=emb,
                     probs=np.concatenate(probs).astype(np.float32) if want_probs else None)
    out.timing.update(cached=True, embedded=embedded, embed_seconds=t1 - t0,
                      head_seconds=time.perf_counter() - t1)
    return out
