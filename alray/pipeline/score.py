"""Score pool frames with Ray Data: an actor pool runs the backbone once per frame and the
MC-dropout head T times, producing embeddings, probabilities and one per-frame score.
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
from alray.pipeline.embed_actor import actor_pool
from alray.pipeline.ray_runtime import limit_inflight
from alray.storage import Store, sql_list
from alray.storage.uri import is_remote, storage_options

__all__ = ["PoolScores", "ScoringActor", "score_pool"]

log = logging.getLogger(__name__)


@dataclass
class PoolScores:
    """Scoring output over the candidate frames, in ``frame_id`` order."""

    frame_ids: np.ndarray  # [N] str
    scores: np.ndarray  # [N] float32, higher = more informative
    embeddings: np.ndarray  # [N, D] float32
    probs: np.ndarray | None  # [N, T, C] float32, when requested
    timing: dict = field(default_factory=dict)


class ScoringActor:
    """Ray Data callable class.

    Reads batch keys ``frame_id``, ``image``, ``height``, ``width``, ``channels``; writes
    ``frame_id``, ``embedding`` [B, D], ``score`` [B] and, with ``want_probs``, ``probs``
    [B, T, C]. The model loads once in ``__init__``.
    """

    def __init__(self, checkpoint_uri: str, model_cfg, score_name: str, want_probs: bool,
                 seed: int, device: str = "cpu"):
        from alray.pipeline.train import load_checkpoint

        torch.manual_seed(seed)
        self.model = load_checkpoint(checkpoint_uri, model_cfg).to(device).eval()
        self.samples = model_cfg.mc_samples
        self.score_name = score_name
        self.want_probs = want_probs
        self.device = device

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from alray.pipeline.embed_actor import embed_images

        shape = tuple(int(batch[k][0]) for k in ("height", "width", "channels"))
        # [B, D] (backbone once) and [B, T, C] (T dropout masks)
        feats, probs = embed_images(self.model, batch["image"], shape, self.samples, self.device)
        out = {
            "frame_id": batch["frame_id"],
            "embedding": feats.float().cpu().numpy(),
            "score": acquisition.score(self.score_name, probs).astype(np.float32),
        }
        if self.want_probs:
            out["probs"] = probs.float().cpu().numpy()
        return out


def score_pool(cfg: ProjectConfig, store: Store, checkpoint_uri: str, *, seed: int,
               want_probs: bool, candidate_ids: list[str] | None = None) -> PoolScores:
    """Score the pool's decodable frames (or only ``candidate_ids``) with a round's model.

    With ``model.freeze_backbone`` the scores come from the embeddings stored in ``frames``
    (head only, see :func:`alray.pipeline.embed_cache.score_cached`); otherwise an actor pool
    re-embeds the pixels.
    """
    where = "split = 'pool' AND status != 'failed'"
    if candidate_ids is not None:
        where = f"frame_id IN {sql_list(candidate_ids)}"
    if cfg.model.freeze_backbone:
        from alray.pipeline.embed_cache import score_cached

        return score_cached(cfg, store, checkpoint_uri, seed=seed, want_probs=want_probs,
                            where=where)
    t0 = time.perf_counter()
    acq = cfg.acquisition
    # The predicate is pushed down into the Lance scan (no full-table read).
    ds = ray.data.read_lance(
        store.frames_uri(),
        columns=["frame_id", "image", "height", "width", "channels"],
        scanner_options={"filter": where},
        # Reads hold no CPU slot: actor pools of concurrent rounds can then never starve
        # the reads that feed them (a deadlock seen with 3 concurrent runs on 2 CPUs).
        num_cpus=0,
        storage_options=storage_options() if is_remote(store.uri) else None,
    )
    limit_inflight(ds, cfg)
    ds = ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs={
            "checkpoint_uri": checkpoint_uri, "model_cfg": cfg.model, "score_name": acq.score,
            "want_probs": want_probs, "seed": seed,
            "device": "cuda" if acq.actor_gpus > 0 else "cpu"},
        batch_size=acq.scoring_batch_size,
        compute=actor_pool(acq.scoring_actors),
        num_cpus=acq.actor_cpus,
        num_gpus=acq.actor_gpus or None,
    )
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
    order = np.argsort(frame_ids, kind="stable")
    out = PoolScores(
        frame_ids=frame_ids[order],
        scores=np.concatenate(scores)[order].astype(np.float32),
        embeddings=np.concatenate(embs)[order].astype(np.float32),
        probs=np.concatenate(probs)[order].astype(np.float32) if want_probs else None,
    )
    out.timing["score_seconds"] = time.perf_counter() - t0
    log.info("scored %d frames in %.1fs", len(frame_ids), out.timing["score_seconds"])
    return out
