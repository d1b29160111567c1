"""Stored embeddings (``frames.embedding``): computing them and reading them back.

When the stored embeddings may stand in for the backbone is decided in one place,
:mod:`alray.pipeline.score` (see its docstring); this module only does the work. The ``meta``
key :data:`CACHE_KEY` holds the fingerprint (:func:`~alray.models.backbone_fingerprint`) of
the backbone that produced every stored embedding, or None when they are mixed or unknown.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from alray.config import ProjectConfig
from alray.pipeline.embed_actor import scoring_stage
from alray.pipeline.ray_runtime import frames_dataset

__all__ = ["CACHE_KEY", "embed_frames", "stored_embeddings"]

CACHE_KEY = "embedding_backbone"


def embed_frames(cfg: ProjectConfig, store, checkpoint_uri: str | None, *, where: str,
                 num_classes: int = 2) -> int:
    """Embed the frames matching ``where`` in the actor pool and store the embeddings.

    Streams: each batch is merged into ``frames`` as it arrives. Returns the frames embedded.
    """
    if store.count_frames(where) == 0:
        return 0
    ds = scoring_stage(frames_dataset(cfg, store, where), cfg, checkpoint_uri=checkpoint_uri,
                       num_classes=num_classes, init_seed=cfg.seed, keep=("frame_id",))
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


def stored_embeddings(store, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(frame_ids [N] object, embeddings [N, D] float32)`` of the frames matching ``where``,
    in ``frame_id`` order."""
    t = store.read_frames(["embedding"], where)
    col = t["embedding"].combine_chunks()
    dim = col.type.list_size
    emb = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    return np.asarray(t["frame_id"].to_pylist(), dtype=object), emb
