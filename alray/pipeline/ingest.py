"""Ingest a pool into the ``frames`` table with Ray Data: list → decode (tasks) → write.

Re-running is safe: frames already present (by ``frame_id``) are left as they are. Frame ids
are paths relative to the pool root (DESIGN.md "Frame identity"); a listing or batch that
would give two frames one id is refused, and so is a store built with an earlier id scheme.
Ingest says what it did to the data: frames resized or converted (from what to what), a pool
without labels; a pool whose channels differ from ``model.in_channels`` is an error.
"""

from __future__ import annotations

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
from alray.sources._common import check_unique
from alray.sources.decode import decode_work_items
from alray.sources.identity import hash_ids, record_pool
from alray.storage import Store
from alray.storage.schema import FrameStatus

__all__ = ["IngestSummary", "assign_splits", "ingest", "require_ground_truth"]

log = logging.getLogger(__name__)

@dataclass
class IngestSummary:
    """What one ingest run did.

    ``sources`` counts the distinct ``source_id`` values seen (videos, image folders);
    ``failures`` lists ``{"frame_id", "error"}`` with the decoder's message;
    ``stage_seconds`` splits the wall time into the driver's LanceDB writes and the time spent
    waiting on the decode (and embed) stages, and gives ``startup``: the seconds until the
    first batch reached the driver (worker processes starting, models loading);
    ``frames_per_second`` is end to end; ``labeled``: listed items that ship a label (0: the
    simulated annotator has nothing to label with); ``notices``: what ingest did to the data
    that the user should know (resizing, channel conversion, no labels, a moved pool root).
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
    labeled: int = 0
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def assign_splits(frame_id: np.ndarray, *, val: float, test: float, seed: int) -> np.ndarray:
    """Draw each frame's split from a hash of (seed, frame_id).

    Stable under re-ingest, streaming and moving the data (ids are relative paths), uniform,
    vectorised over frames.
    """
    z = hash_ids(frame_id, seed)
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < val, "val", np.where(u < val + test, "test", "pool")).astype(object)


def _listing(cfg: ProjectConfig) -> PoolListing:
    lister = get_source(cfg.pool.format)[0]
    kwargs = {"limit": cfg.pool.limit}
    if "pool" in inspect.signature(lister).parameters:
        kwargs["pool"] = cfg.pool
    return lister(cfg.pool.uri, **kwargs)


def require_ground_truth(cfg: ProjectConfig, what: str = "alray compare") -> None:
    """Refuse a simulation on a pool that ships no labels (the simulated annotator labels a
    selection from the pool's own labels; without them every round would wait forever).

    Raises:
        ValueError: naming the pool and what to do instead.
    """
    if not _listing(cfg).labeled:
        raise ValueError(
            f"{what} simulates the annotator with the pool's own labels, but pool.uri="
            f"{cfg.pool.uri!r} ships none (no labels file, class folders, manifest 'label' "
            "column or IDX labels file). Label it yourself: alray run CONFIG, then alray "
            "labels push CONFIG FILE.jsonl (or the HTTP service)")


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
        FileNotFoundError / ValueError: the pool cannot be listed (names the URI or file), two
            frames would get one id, the store was built with an earlier id scheme, the
            classes differ from the store's, or the pool's channels differ from
            ``model.in_channels``.
    """
    from alray.sources._common import aws_env

    t0 = time.perf_counter()
    listing = _listing(cfg)
    notices = record_pool(store, cfg.pool.format, listing.root)
    classes = list(cfg.pool.classes or listing.classes)  # an unlabeled pool may name its classes
    known = store.get_meta("classes")
    if known and known != classes:
        raise ValueError(f"pool {cfg.pool.uri!r} has classes {classes}, but the store "
                         f"already holds {known} (stores written before numeric classes kept "
                         "their numbers sort them as text: start a new store, or set "
                         "pool.classes to the store's list)")
    if cfg.model.num_classes and cfg.model.num_classes < len(classes):
        raise ValueError(f"model.num_classes={cfg.model.num_classes} but pool {cfg.pool.uri!r} "
                         f"has {len(classes)} classes ({classes[:5]} ...): raise it, or leave it "
                         "null to take the count from the data")
    store.set_meta("classes", classes)
    n_cls = cfg.model.num_classes or max(2, len(classes))
    dim = build_model(cfg.model, n_cls).feature_dim
    summary = IngestSummary(classes=classes, sources=len(listing.tasks),
                            labeled=listing.labeled, notices=notices)
    if not listing.labeled:
        summary.notices.append(
            f"pool {cfg.pool.uri!r} ships no labels: the simulated annotator (alray run, alray "
            "compare) has none to give, so rounds wait for yours (alray labels push, or the "
            "HTTP service)")
    if not listing.tasks:
        _tell(summary)
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
    shapes = _Shapes(cfg)
    t_write, t_first = 0.0, None
    for batch in _gather(ds, cfg.pool.batch_frames * 4):
        shapes.add(batch)  # raises on a channel mismatch before the first write
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
    summary.notices += shapes.notices()
    _tell(summary)
    if store.ensure_key_index("frames", "frame_id"):
        log.info("ingest: indexed frames.frame_id")
    if indexed := store.ensure_status_indices():
        log.info("ingest: indexed frames.%s (BITMAP)", ", frames.".join(indexed))
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


def _tell(summary: IngestSummary) -> None:
    for note in summary.notices:
        log.warning("ingest: %s", note)


class _Shapes:
    """Source sizes and channels seen in the decoded batches: the channel check (on the
    first batch with decoded frames) and the resize/conversion notices."""

    def __init__(self, cfg: ProjectConfig):
        self.cfg = cfg
        self.checked = False
        self.seen: dict[tuple[int, int, int], int] = {}
        self.example: dict[tuple[int, int, int], str] = {}

    def add(self, b: dict[str, np.ndarray]) -> None:
        if "src_channels" not in b:  # a reader (or stage) that does not report them
            return
        src = np.stack([b["src_height"], b["src_width"], b["src_channels"]], axis=1)
        ok = src[:, 2] > 0
        if not ok.any():
            return
        uniq, first, counts = np.unique(src[ok], axis=0, return_index=True, return_counts=True)
        uris = b["source_uri"][ok]
        for u, i, c in zip(uniq.tolist(), first, counts, strict=True):  # distinct sizes only
            self.seen[tuple(u)] = self.seen.get(tuple(u), 0) + int(c)
            self.example.setdefault(tuple(u), str(uris[i]))
        if not self.checked:
            self.checked = True
            self._check_channels(src[ok, 2], uris)

    def _check_channels(self, channels: np.ndarray, uris: np.ndarray) -> None:
        want = self.cfg.model.in_channels
        off = channels != want
        if off.mean() > 0.5:
            got = int(np.bincount(channels[off]).argmax())
            kind = {1: "grayscale", 3: "colour (RGB)"}.get(got, f"{got}-channel")
            raise ValueError(
                f"model.in_channels={want} does not match the pool: its frames are {kind}, "
                f"{got} channel(s) (e.g. {uris[np.flatnonzero(off)[0]]}); set "
                f"model.in_channels: {got}, or convert the data")

    def notices(self) -> list[str]:
        size, want = self.cfg.model.input_size, self.cfg.model.in_channels
        resized = {k: v for k, v in self.seen.items() if k[:2] != (size, size)}
        out = []
        if resized:
            top = sorted(resized.items(), key=lambda kv: -kv[1])[:3]
            shown = ", ".join(f"{w}x{h} ({n} frames, e.g. {self.example[(h, w, c)]})"
                              for (h, w, c), n in top)
            more = f" and {len(resized) - 3} more sizes" if len(resized) > 3 else ""
            out.append(f"frames resized to {size}x{size} (model.input_size) from {shown}{more}")
        converted = sum(n for k, n in self.seen.items() if k[2] != want)
        if converted:
            out.append(f"{converted} frame(s) converted to {want} channel(s) "
                       f"(model.in_channels) from {'RGB' if want == 1 else 'grayscale'}")
        return out


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
    check_unique(b["frame_id"], what=f"pool {cfg.pool.uri!r} (format {cfg.pool.format!r})")
    failed = b["error"].astype(str) != ""
    split = assign_splits(b["frame_id"], val=cfg.pool.val_fraction,
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
