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

__all__ = ["CPU_CHUNK", "EmbedActor", "actor_pool", "embed_images", "model_for"]

#: Frames per forward pass on CPU. A batch's activations are tens of MB, which the allocator
#: maps afresh and the kernel faults in on every call: a single-threaded actor spent 20-30%
#: more CPU per frame on batches of 512 than of 64 (resnet18 at 64 px: 3.55 vs 2.71 ms;
#: mnist_cnn at 32 px: 0.46 vs 0.38 ms). A GPU takes the whole batch at once.
CPU_CHUNK = 64


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


def embed_images(model, images, shape: tuple[int, int, int], samples: int | None,
                 device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backbone features ``[N, D]`` of raw ``[H, W, C]`` uint8 images and, with ``samples``,
    the MC head's probabilities ``[N, T, C]``, in chunks of :data:`CPU_CHUNK` on CPU.
    ``images`` (N >= 1) is a pyarrow binary array or a sequence of bytes."""
    from alray.models.tensors import images_to_tensor

    n = len(images)
    chunk = CPU_CHUNK if device == "cpu" else max(n, 1)
    feats, probs = [], []
    for s in range(0, n, chunk):  # chunks of a batch, not pool items
        x = images_to_tensor(images[s: s + chunk], *shape).to(device)
        f = model.features(x)
        feats.append(f)
        if samples:
            probs.append(model.head(f, samples))
    return torch.cat(feats), (torch.cat(probs) if samples else None)


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
        n = len(batch["image"])
        ok = np.asarray([len(x) > 0 for x in batch["image"]]) if "error" not in batch else (
            batch["error"].astype(str) == "")
        out = dict(batch)
        emb = np.full((n, self.model.feature_dim), np.nan, dtype=np.float32)
        score = np.full(n, np.nan, dtype=np.float32)
        rows = np.flatnonzero(ok)
        if rows.size:
            shape = tuple(int(batch[k][rows[0]]) for k in ("height", "width", "channels"))
            images = batch["image"] if rows.size == n else batch["image"][rows]
            feats, probs = embed_images(self.model, images, shape,  # the backbone once
                                        self.samples if self.score_name else None, self.device)
            emb[rows] = feats.float().cpu().numpy()
            if self.score_name:
                score[rows] = acquisition.score(self.score_name, probs).astype(np.float32)
        out["embedding"] = emb
        if self.score_name:
            out["score"] = score
        return out
