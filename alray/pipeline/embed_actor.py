"""The embedding/scoring actor of the ingest and cache pipelines, in a light module.

Every actor process imports this module: it needs torch and the model, not LanceDB (importing
the store stack in each actor cost about 1.5 s of start-up per process on 2 cores).
"""

from __future__ import annotations

import numpy as np
import ray
import torch

from alray import acquisition
from alray.config import ModelConfig

__all__ = ["EmbedActor", "actor_pool", "model_for"]


def actor_pool(size: int) -> ray.data.ActorPoolStrategy:
    """An actor pool that starts at its full ``size`` (at least 1 actor).

    Starting at one actor and letting Ray Data scale up added the second actor's start-up
    (importing torch, loading the checkpoint: seconds on a busy 2-core node) to every pass.
    """
    size = max(1, int(size))
    return ray.data.ActorPoolStrategy(min_size=1, max_size=size, initial_size=size)


def model_for(model_cfg: ModelConfig, checkpoint_uri: str | None, num_classes: int, seed: int):
    """A round's model from its checkpoint, or the config's (seeded) model when None."""
    if checkpoint_uri:
        from alray.pipeline.train import load_checkpoint

        return load_checkpoint(checkpoint_uri, model_cfg).eval()
    from alray.models import build_model

    torch.manual_seed(seed)
    return build_model(model_cfg, num_classes).eval()


class EmbedActor:
    """Ray Data callable class: backbone once per frame (and the MC head with a checkpoint).

    Reads ``image``, ``height``, ``width``, ``channels`` and ``error`` (or ``status``); passes
    every input key through and adds ``embedding`` [B, D] float32 (NaN rows for failed frames)
    and, when ``score_name`` is set, ``score`` [B] float32 (NaN for failed frames).
    """

    def __init__(self, model_cfg: ModelConfig, checkpoint_uri: str | None = None,
                 num_classes: int = 2, score_name: str | None = None, seed: int = 0,
                 device: str = "cpu"):
        self.model = model_for(model_cfg, checkpoint_uri, num_classes, seed).to(device)
        self.samples = model_cfg.mc_samples
        self.score_name = score_name
        self.device = device
        torch.manual_seed(seed)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from alray.models.tensors import images_to_tensor

        n = len(batch["image"])
        ok = np.asarray([len(x) > 0 for x in batch["image"]]) if "error" not in batch else (
            batch["error"].astype(str) == "")
        out = dict(batch)
        emb = np.full((n, self.model.feature_dim), np.nan, dtype=np.float32)
        score = np.full(n, np.nan, dtype=np.float32)
        rows = np.flatnonzero(ok)
        if rows.size:
            h, w, c = (int(batch[k][rows[0]]) for k in ("height", "width", "channels"))
            x = images_to_tensor([batch["image"][i] for i in rows], h, w, c).to(self.device)
            feats = self.model.features(x)  # [B, D], the backbone once
            emb[rows] = feats.float().cpu().numpy()
            if self.score_name:
                probs = self.model.head(feats, self.samples)  # [B, T, C]
                score[rows] = acquisition.score(self.score_name, probs).astype(np.float32)
        out["embedding"] = emb
        if self.score_name:
            out["score"] = score
        return out
