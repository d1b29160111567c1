"""The embedding cache: with a frozen backbone, embed each frame once and re-score from
``frames.embedding`` with the MC-dropout head alone.

The ``meta`` key ``embedding_backbone`` holds a fingerprint (SHA-1 of the backbone's
``state_dict``) of the backbone that produced the stored embeddings. A round whose checkpoint
has the same backbone embeds only frames that have none yet (new ingests) and scores the rest
from storage without reading a pixel; a different backbone re-embeds every frame first.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import pyarrow as pa
import ray
import torch

from alray import acquisition
from alray.config import ProjectConfig
from alray.pipeline.embed_actor import EmbedActor, actor_pool, model_for
from alray.pipeline.ray_runtime import limit_inflight
from alray.pipeline.score import PoolScores
from alray.storage import Store
from alray.storage.uri import is_remote, storage_options

__all__ = [
    "CACHE_KEY", "EmbedActor", "backbone_fingerprint", "embed_frames", "model_for",
    "score_cached",
]

log = logging.getLogger(__name__)
CACHE_KEY = "embedding_backbone"


def backbone_fingerprint(model) -> str:
    """SHA-1 over the backbone's parameters and buffers (names, shapes and bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def embed_frames(cfg: ProjectConfig, store: Store, checkpoint_uri: str | None, *,
                 where: str, num_classes: int = 2) -> int:
    """Embed the frames matching ``where`` in an actor pool and store the embeddings.

    Streams: each batch is merged into ``frames`` as it arrives. Returns the frames embedded.
    """
    if store.count_frames(where) == 0:
        return 0
    acq = cfg.acquisition
    ds = ray.data.read_lance(
        store.frames_uri(), columns=["frame_id", "image", "height", "width", "channels"],
        scanner_options={"filter": where},
        num_cpus=0,  # reads hold no CPU slot, so they never starve the actor pool they feed
        storage_options=storage_options() if is_remote(store.uri) else None)
    limit_inflight(ds, cfg)
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"model_cfg": cfg.model, "checkpoint_uri": checkpoint_uri,
                               "num_classes": num_classes, "seed": cfg.seed,
                               "device": "cuda" if acq.actor_gpus > 0 else "cpu"},
        batch_size=acq.scoring_batch_size,
        compute=actor_pool(acq.scoring_actors),
        num_cpus=acq.actor_cpus, num_gpus=acq.actor_gpus or None)
    done = 0
    for b in ds.iter_batches(batch_size=8192, batch_format="numpy"):
        emb = b["embedding"].astype(np.float32)
        store.update_frames(pa.table({
            "frame_id": pa.array(b["frame_id"].astype(str).tolist(), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)),
                                                           emb.shape[1]),
        }))
        done += len(emb)
    return done


def _stored_embeddings(store: Store, where: str) -> tuple[np.ndarray, np.ndarray]:
    t = store.read_frames(["embedding"], where)
    col = t["embedding"].combine_chunks()
    dim = col.type.list_size
    emb = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    return np.asarray(t["frame_id"].to_pylist(), dtype=object), emb


def _consistent_heads(model, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The MC-dropout head as ``T`` linear maps: dropout mask ``t`` folded into the weights.

    ``MCDropoutClassifier.head`` is ``softmax(fc(dropout(features)))``; drawing one mask per
    sample ``t`` shared by every frame ("consistent MC dropout", as in BatchBALD) turns the T
    passes into ``x @ (m_t * W)^T``: no per-frame random numbers, O(N·T·D·C) work.

    Returns:
        Weights ``[T, C, D]`` (masked and rescaled) and the bias ``[C]``.
    """
    w, b, p = model.fc.weight.detach(), model.fc.bias.detach(), float(model.p)
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(samples, w.shape[1], generator=gen) >= p  # [T, D]
    masks = keep.float() / (1.0 - p) if p else torch.ones(samples, w.shape[1])
    return masks[:, None, :] * w[None], b


def score_cached(cfg: ProjectConfig, store: Store, checkpoint_uri: str, *, seed: int,
                 want_probs: bool, where: str, chunk: int = 16384) -> PoolScores:
    """Score the frames matching ``where`` from stored embeddings (head only).

    The T MC-dropout samples use masks shared by all frames (see :func:`_consistent_heads`).
    Frames with no embedding yet (or all frames, when the checkpoint's backbone differs from
    the one behind the cache) are embedded first by :func:`embed_frames`.

    Raises:
        ValueError: no frame matches ``where``.
    """
    t0 = time.perf_counter()
    model = model_for(cfg.model, checkpoint_uri, 2, seed)
    fp = backbone_fingerprint(model)
    n_cls = model.num_classes
    if store.get_meta(CACHE_KEY) != fp:
        store.set_meta(CACHE_KEY, None)  # a crash below leaves the cache marked invalid
        embedded = embed_frames(cfg, store, checkpoint_uri, where="status != 'failed'",
                                num_classes=n_cls)
        store.set_meta(CACHE_KEY, fp)
    else:
        embedded = embed_frames(cfg, store, checkpoint_uri, num_classes=n_cls,
                                where="status != 'failed' AND embedding IS NULL")
    t1 = time.perf_counter()
    ids, emb = _stored_embeddings(store, where)
    if ids.size == 0:
        raise ValueError("no frames to score: the pool is empty or every frame failed")
    heads = _consistent_heads(model, cfg.model.mc_samples, seed)  # [T, C, D], [C]
    scores, probs = [], []
    with torch.no_grad():
        for s in range(0, len(ids), chunk):  # chunks of frames, the same T masks for all
            x = torch.from_numpy(emb[s: s + chunk])  # [B, D]
            logits = torch.einsum("nd,tcd->ntc", x, heads[0]) + heads[1]  # [B, T, C]
            p = torch.softmax(logits, dim=-1)
            scores.append(acquisition.score(cfg.acquisition.score, p).astype(np.float32))
            if want_probs:
                probs.append(p.numpy())
    out = PoolScores(frame_ids=ids, scores=np.concatenate(scores), embeddings=emb,
                     probs=np.concatenate(probs).astype(np.float32) if want_probs else None)
    out.timing.update(cached=True, embedded=embedded, embed_seconds=t1 - t0,
                      head_seconds=time.perf_counter() - t1,
                      score_seconds=time.perf_counter() - t0)
    log.info("scored %d frames from cached embeddings (%d embedded first) in %.2fs",
             len(ids), embedded, out.timing["score_seconds"])
    return out
