"""Ingest a pool into the ``frames`` table with Ray Data: list → decode (tasks) → write.

Re-running is safe: frames already present (by ``frame_id``) are left as they are.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import ray

from alray.config import ProjectConfig
from alray.models import build_model
from alray.sources import PoolListing, get_source
from alray.storage import Store

__all__ = ["IngestSummary", "assign_splits", "ingest"]

log = logging.getLogger(__name__)

@dataclass
class IngestSummary:
    """What one ingest run did."""

    sources: int = 0
    frames_added: int = 0
    frames_present: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def assign_splits(frame_index: np.ndarray, source_id: np.ndarray, *, val: float, test: float,
                  seed: int) -> np.ndarray:
    """Draw each frame's split from a hash of (seed, source_id, frame_index).

    Stable under re-ingest and streaming (no global state), uniform, vectorised over frames.
    """
    uniq, inv = np.unique(source_id.astype(str), return_inverse=True)
    salt = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8)
                                    .digest(), "little") for s in uniq], dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = frame_index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + salt[inv]
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < val, "val", np.where(u < val + test, "test", "pool")).astype(object)


def _decode(batch: dict[str, np.ndarray], fmt: str, input_size: int,
            channels: int) -> dict[str, np.ndarray]:
    """Ray Data task: a batch of work items → frame records (see ``alray.sources.base``)."""
    read = get_source(fmt)[1]
    keys = list(batch)
    parts = [read({k: batch[k][i] for k in keys}, input_size=input_size, channels=channels)
             for i in range(len(batch[keys[0]]))]  # loop over work items (shards), not frames
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _listing(cfg: ProjectConfig) -> PoolListing:
    return get_source(cfg.pool.format)[0](cfg.pool.uri, limit=cfg.pool.limit)


def ingest(cfg: ProjectConfig, store: Store) -> IngestSummary:
    """Read the pool named by ``cfg.pool`` into ``store`` (idempotent).

    Raises:
        FileNotFoundError / ValueError: the pool cannot be listed (names the URI or file).
    """
    t0 = time.perf_counter()
    listing = _listing(cfg)
    known = store.get_meta("classes")
    if known and known != listing.classes:
        raise ValueError(f"pool {cfg.pool.uri!r} has classes {listing.classes}, but the store "
                         f"already holds {known}")
    store.set_meta("classes", listing.classes)
    dim = build_model(cfg.model, max(2, len(listing.classes))).feature_dim
    summary = IngestSummary(classes=listing.classes)
    if not listing.tasks:
        return summary
    ds = ray.data.from_items(listing.tasks, override_num_blocks=len(listing.tasks))
    ds = ds.map_batches(
        _decode, fn_kwargs={"fmt": cfg.pool.format, "input_size": cfg.model.input_size,
                                        "channels": cfg.model.in_channels},
        batch_size=1, num_cpus=0.5)
    sources: set[str] = set()
    for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
        summary.frames_added, summary.frames_present = _write(
            store, batch, cfg, dim, summary.frames_added, summary.frames_present)
        failed = batch["error"].astype(str) != ""
        summary.failed += int(failed.sum())
        summary.failures += [{"frame_id": f, "error": e} for f, e in
                             zip(batch["frame_id"][failed], batch["error"][failed], strict=True)]
        sources.update(np.unique(batch["source_id"].astype(str)).tolist())
    summary.sources = len(sources)
    summary.seconds = time.perf_counter() - t0
    log.info("ingest: %s", summary.to_dict())
    return summary


def _write(store: Store, b: dict[str, np.ndarray], cfg: ProjectConfig, dim: int,
           added: int, present: int) -> tuple[int, int]:
    n = len(b["frame_id"])
    failed = b["error"].astype(str) != ""
    split = assign_splits(b["frame_index"], b["source_id"], val=cfg.pool.val_fraction,
                          test=cfg.pool.test_fraction, seed=cfg.pool.seed)
    # Failed frames stay out of every split's training/eval: keep them in 'pool' but 'failed'.
    split[failed] = "pool"
    table = pa.table({
        "frame_id": pa.array(b["frame_id"], pa.string()),
        "source_uri": pa.array(b["source_uri"], pa.string()),
        "source_id": pa.array(b["source_id"], pa.string()),
        "frame_index": b["frame_index"],
        "timestamp_ms": b["timestamp_ms"],
        "split": pa.array(split, pa.string()),
        "status": pa.array(np.where(failed, "failed", "unlabeled").astype(object), pa.string()),
        "label": pa.nulls(n, pa.int64()),
        "selected_round": pa.nulls(n, pa.int64()),
        "labeled_round": pa.nulls(n, pa.int64()),
        "embedding": pa.nulls(n, pa.list_(pa.float32(), dim)),
        "score": pa.nulls(n, pa.float32()),
        "error": pa.array(np.where(failed, b["error"], None), pa.string()),
        "image": pa.array(b["image"], pa.binary()),
        "height": b["height"], "width": b["width"], "channels": b["channels"],
    })
    a, p = store.add_frames(table, dim)
    has_gt = b["gt_label"] >= 0
    if has_gt.any():
        store.add_ground_truth(b["frame_id"][has_gt], b["gt_label"][has_gt])
    return added + a, present + p
