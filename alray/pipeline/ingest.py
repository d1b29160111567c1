"""Ingest a pool into the ``frames`` table with Ray Data: list → decode (tasks) → write.

Re-running is safe: frames already present (by ``frame_id``) are left as they are.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import ray

from alray.config import ProjectConfig
from alray.models import build_model
from alray.pipeline.ray_runtime import batch_bytes, limit_inflight
from alray.sources import PoolListing, get_source
from alray.sources.decode import decode_work_items
from alray.storage import Store
from alray.storage.schema import FrameStatus

__all__ = ["IngestSummary", "assign_splits", "ingest"]

log = logging.getLogger(__name__)

@dataclass
class IngestSummary:
    """What one ingest run did.

    ``sources`` counts the distinct ``source_id`` values seen (videos, image folders);
    ``failures`` lists ``{"frame_id", "error"}`` with the decoder's message;
    ``stage_seconds`` splits the wall time into the driver's LanceDB writes and the time spent
    waiting on the decode (and embed) stages, and gives ``startup``: the seconds until the
    first batch reached the driver (worker processes starting, models loading);
    ``frames_per_second`` is end to end.
    """

    sources: int = 0
    frames_added: int = 0
    frames_present: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    frames_per_second: float = 0.0
    stage_seconds: dict = field(default_factory=dict)

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


def _listing(cfg: ProjectConfig) -> PoolListing:
    lister = get_source(cfg.pool.format)[0]
    kwargs = {"limit": cfg.pool.limit}
    if "pool" in inspect.signature(lister).parameters:
        kwargs["pool"] = cfg.pool
    return lister(cfg.pool.uri, **kwargs)


def ingest(cfg: ProjectConfig, store: Store, *, checkpoint_uri: str | None = None,
           on_batch: Callable[[IngestSummary], None] | None = None) -> IngestSummary:
    """Read the pool named by ``cfg.pool`` into ``store`` (idempotent, resumable).

    The pipeline streams: decode runs in CPU tasks, the optional embedding stage in an actor
    pool, and each batch is merged into ``frames`` as it arrives, so memory stays flat in the
    pool size. An interrupted ingest re-run adds only the frames it had not written.

    Args:
        cfg: The project config (``pool``, ``model.input_size``/``in_channels``).
        store: The project store.
        checkpoint_uri: A round checkpoint: also embed *and* MC-score every frame on the way in.
            None: embed only when ``pool.embed_on_ingest`` and ``model.freeze_backbone``.
        on_batch: Called with the running summary after each written batch (progress).

    Returns:
        What was added, what was already present and what failed (with the errors).

    Raises:
        FileNotFoundError / ValueError: the pool cannot be listed (names the URI or file).
    """
    from alray.sources._common import aws_env

    t0 = time.perf_counter()
    listing = _listing(cfg)
    known = store.get_meta("classes")
    if known and known != listing.classes:
        raise ValueError(f"pool {cfg.pool.uri!r} has classes {listing.classes}, but the store "
                         f"already holds {known}")
    store.set_meta("classes", listing.classes)
    n_cls = cfg.model.num_classes or max(2, len(listing.classes))
    dim = build_model(cfg.model, n_cls).feature_dim
    summary = IngestSummary(classes=listing.classes, sources=len(listing.tasks))
    if not listing.tasks:
        return summary
    env = aws_env(cfg.pool.s3_endpoint_url, cfg.pool.s3_region)
    ds = ray.data.from_items(listing.tasks, override_num_blocks=len(listing.tasks))
    # One block per decoded batch (not Ray Data's 128 MiB default): the embed stage starts on
    # a video's first batch instead of waiting for its whole decode.
    ds.context.target_max_block_size = max(1 << 20, 2 * batch_bytes(cfg))
    limit_inflight(ds, cfg)
    ds = ds.map_batches(
        decode_work_items, fn_kwargs={"fmt": cfg.pool.format, "input_size": cfg.model.input_size,
                            "channels": cfg.model.in_channels, "env": env},
        batch_size=1, num_cpus=_decode_cpus(cfg))
    embed = checkpoint_uri is not None or (cfg.pool.embed_on_ingest and cfg.model.freeze_backbone)
    if embed:
        ds = _embed_stage(ds, cfg, checkpoint_uri, n_cls, store)
    sources: set[str] = set()
    t_write, t_first = 0.0, None
    for batch in _gather(ds, cfg.pool.batch_frames * 4):
        tw = time.perf_counter()
        t_first = tw - t0 if t_first is None else t_first
        summary.frames_added, summary.frames_present = _write(
            store, batch, cfg, dim, summary.frames_added, summary.frames_present)
        t_write += time.perf_counter() - tw
        failed = batch["error"].astype(str) != ""
        summary.failed += int(failed.sum())
        summary.failures += [{"frame_id": f, "error": e} for f, e in
                             zip(batch["frame_id"][failed], batch["error"][failed], strict=True)]
        sources.update(np.unique(batch["source_id"].astype(str)).tolist())
        summary.seconds = time.perf_counter() - t0
        summary.stage_seconds = {"write": round(t_write, 3), "startup": round(t_first, 3)}
        done = summary.frames_added + summary.frames_present
        summary.frames_per_second = done / max(summary.seconds, 1e-9)
        log.info("ingest: %d frames (%d new), %.0f frames/s", done, summary.frames_added,
                 summary.frames_per_second)
        if on_batch is not None:
            on_batch(summary)
    summary.sources = len(sources)
    if store.ensure_key_index("frames", "frame_id"):
        log.info("ingest: indexed frames.frame_id")
    summary.seconds = time.perf_counter() - t0
    summary.stage_seconds = {"write": round(t_write, 3),
                             "decode_embed_wait": round(summary.seconds - t_write, 3),
                             "startup": round(t_first or 0.0, 3)}
    done = summary.frames_added + summary.frames_present
    summary.frames_per_second = done / max(summary.seconds, 1e-9)
    log.info("ingest: %s", {k: v for k, v in summary.to_dict().items() if k != "failures"})
    log.debug("ingest stages:\n%s", ds.stats())
    return summary


def _gather(ds: ray.data.Dataset, rows: int) -> Iterator[dict[str, np.ndarray]]:
    """The pipeline's blocks as they arrive, cut into batches of ``rows`` frames (the last
    one shorter).

    Whole blocks are pulled as each is done (``batch_size=None``) and joined here, so the
    rows waiting for a write sit in the driver rather than in Ray Data's batcher and
    prefetcher (prefetched bytes count against the object-store budget, ``pool.inflight_mb``).
    """
    held: list[dict[str, np.ndarray]] = []
    count = 0
    for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
        held.append(block)
        count += len(block["frame_id"])
        if count < rows:
            continue
        joined = {k: np.concatenate([b[k] for b in held]) for k in held[0]}
        cut = count - count % rows
        for start in range(0, cut, rows):  # a block may hold several batches
            yield {k: v[start: start + rows] for k, v in joined.items()}
        held = [{k: v[cut:] for k, v in joined.items()}] if count > cut else []
        count -= cut
    if held:
        yield {k: np.concatenate([b[k] for b in held]) for k in held[0]}


def _decode_cpus(cfg: ProjectConfig) -> float:
    """``pool.decode_cpus``, nudged off the scoring actors' share when they are equal: with
    equal remote args Ray Data fuses decode into the actors, and each actor then decodes and
    embeds serially (one actor did all the work: 2.6x slower end to end on 2 cores)."""
    cpus = cfg.pool.decode_cpus
    return cpus if cpus != cfg.acquisition.actor_cpus else cpus * 0.99


def _embed_stage(ds, cfg: ProjectConfig, checkpoint_uri: str | None, n_cls: int, store: Store):
    """Add the scoring stage: embeddings (and with a checkpoint, scores) of decoded frames."""
    from alray.pipeline.score import score_stream

    return score_stream(ds, cfg, store, checkpoint_uri, n_cls)


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
        "status": pa.array(np.where(failed, FrameStatus.FAILED, FrameStatus.UNLABELED)
                           .astype(object), pa.string()),
        "label": pa.nulls(n, pa.int64()),
        "selected_round": pa.nulls(n, pa.int64()),
        "labeled_round": pa.nulls(n, pa.int64()),
        "embedding": _vectors(b.get("embedding"), n, dim),
        "score": (pa.array(b["score"], pa.float32(), from_pandas=True) if "score" in b
                  else pa.nulls(n, pa.float32())),
        "error": pa.array(np.where(failed, b["error"], None), pa.string()),
        "image": pa.array(b["image"], pa.binary()),
        "height": b["height"], "width": b["width"], "channels": b["channels"],
    })
    a, p = store.add_frames(table, dim)
    has_gt = b["gt_label"] >= 0
    if has_gt.any():
        store.add_ground_truth(b["frame_id"][has_gt], b["gt_label"][has_gt])
    return added + a, present + p


def _vectors(emb: np.ndarray | None, n: int, dim: int) -> pa.Array:
    """``[n, dim]`` float32 with NaN rows (failed frames) → FixedSizeList with nulls."""
    if emb is None:
        return pa.nulls(n, pa.list_(pa.float32(), dim))
    emb = np.asarray(emb, dtype=np.float32).reshape(n, dim)
    bad = np.isnan(emb).any(axis=1)
    return pa.FixedSizeListArray.from_arrays(pa.array(np.nan_to_num(emb).reshape(-1)), dim,
                                             mask=pa.array(bad))
