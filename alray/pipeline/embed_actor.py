"""The one embedding/scoring actor (ingest, the embedding cache and re-scoring all use it),
and :func:`scoring_stage`, the one ``map_batches`` block that runs it.

Every actor process imports this module: it needs torch and the model, not LanceDB (importing
the store stack in each actor cost about 1.5 s of start-up per process on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ray
import torch

from alray import acquisition
from alray.config import ModelConfig, ProjectConfig
from alray.models import draw_masks, model_for, predict

__all__ = ["CPU_CHUNK", "ScoringActor", "actor_pool", "embed_images", "scoring_stage"]

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


def embed_images(model, images, shape: tuple[int, int, int], masks, device: str
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backbone features ``[N, D]`` of raw ``[H, W, C]`` uint8 images and, with ``masks``
    (:class:`~alray.models.MCMasks`), the MC probabilities ``[N, T, C]``, in chunks of
    :data:`CPU_CHUNK` on CPU. ``images`` (N >= 1) is a pyarrow binary array or a sequence of
    bytes. A frame's output does not depend on its chunk: the masks are the pass's."""
    from alray.models.tensors import images_to_tensor

    n = len(images)
    chunk = CPU_CHUNK if device == "cpu" else max(n, 1)
    feats, probs = [], []
    for s in range(0, n, chunk):  # chunks of a batch, not pool items
        x = images_to_tensor(images[s: s + chunk], *shape).to(device)
        f, p = predict(model, x, masks)
        feats.append(f)
        probs.append(p)
    return torch.cat(feats), (torch.cat(probs) if masks is not None else None)


class ScoringActor:
    """Ray Data callable class: the backbone once per frame, and the MC-dropout samples.

    Reads ``image``, ``height``, ``width``, ``channels`` and ``error`` when present (an empty
    image or a non-empty error marks a failed frame). Writes ``embedding`` [B, D] float32 (NaN
    rows for failed frames); with ``score_name``, ``score`` [B] float32; with ``want_probs``,
    ``probs`` [B, T, C] float32 (NaN for failed frames). Input keys pass through (only those
    in ``keep`` when given). The model and the pass's T masks load once, in ``__init__``.

    Args:
        model_cfg: the model section of the config.
        checkpoint_uri: a round's checkpoint; None: the config's model seeded by ``init_seed``.
        num_classes: classes of the seeded model (ignored with a checkpoint).
        score_name: the per-frame score to compute (None: embeddings only).
        want_probs: also return the MC probabilities.
        mask_seed: seed of the pass's T dropout masks (the same in every actor).
        init_seed: seed of the model's weights without a checkpoint.
        keep: input keys to pass through (None: all).
        device: ``'cpu'`` or ``'cuda'``.
    """

    def __init__(self, model_cfg: ModelConfig, checkpoint_uri: str | None = None,
                 num_classes: int = 2, *, score_name: str | None = None,
                 want_probs: bool = False, mask_seed: int = 0, init_seed: int = 0,
                 keep: Sequence[str] | None = None, device: str = "cpu"):
        self.model = model_for(model_cfg, checkpoint_uri, num_classes, init_seed).to(device)
        self.masks = None
        if score_name or want_probs:
            self.masks = draw_masks(self.model, model_cfg.mc_samples, mask_seed)
        self.score_name = score_name
        self.want_probs = want_probs
        self.keep = None if keep is None else tuple(keep)
        self.device = device

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["image"])
        ok = np.asarray([len(x) > 0 for x in batch["image"]], dtype=bool)
        if "error" in batch:
            ok &= batch["error"].astype(str) == ""
        out = {k: v for k, v in batch.items() if self.keep is None or k in self.keep}
        emb = np.full((n, self.model.feature_dim), np.nan, dtype=np.float32)
        probs = None
        if self.masks is not None:
            probs = np.full((n, self.masks.samples, self.model.num_classes), np.nan, np.float32)
        rows = np.flatnonzero(ok)
        if rows.size:
            shape = tuple(int(batch[k][rows[0]]) for k in ("height", "width", "channels"))
            images = batch["image"] if rows.size == n else batch["image"][rows]
            feats, p = embed_images(self.model, images, shape, self.masks, self.device)
            emb[rows] = feats.float().cpu().numpy()
            if p is not None:
                probs[rows] = p.float().cpu().numpy()
        out["embedding"] = emb
        if self.score_name:
            score = np.full(n, np.nan, dtype=np.float32)
            if rows.size:
                score[rows] = acquisition.score(self.score_name, probs[rows]).astype(np.float32)
            out["score"] = score
        if self.want_probs:
            out["probs"] = probs
        return out


def scoring_stage(ds: ray.data.Dataset, cfg: ProjectConfig, **actor_kwargs) -> ray.data.Dataset:
    """Add the :class:`ScoringActor` stage to ``ds`` with the config's actor resources
    (``acquisition.scoring_batch_size``, ``scoring_actors``, ``actor_cpus``, ``actor_gpus``).

    ``actor_kwargs`` are :class:`ScoringActor`'s arguments after ``model_cfg``.
    """
    acq = cfg.acquisition
    return ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs={"model_cfg": cfg.model,
                               "device": "cuda" if acq.actor_gpus > 0 else "cpu",
                               **actor_kwargs},
        batch_size=acq.scoring_batch_size,
        compute=actor_pool(acq.scoring_actors),
        num_cpus=acq.actor_cpus,
        num_gpus=acq.actor_gpus or None)
