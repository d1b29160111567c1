"""Start or join Ray once per process; bound what a pipeline keeps in flight."""

from __future__ import annotations

import logging
import os

import ray

from alray.config import ProjectConfig, RayConfig

__all__ = ["batch_bytes", "ensure_ray", "frames_dataset", "inflight_bytes", "limit_inflight"]

#: The columns the scoring actor reads.
IMAGE_COLUMNS = ["frame_id", "image", "height", "width", "channels"]


def ensure_ray(cfg: RayConfig | None = None) -> None:
    """Join ``cfg.address`` or start a local Ray instance, unless Ray is already up."""
    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING,
              "log_to_driver": os.environ.get("ALRAY_RAY_LOGS", "0") == "1"}
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("ALRAY_PROGRESS", "0") == "1"


def batch_bytes(cfg: ProjectConfig) -> int:
    """Bytes of one decoded batch: ``pool.batch_frames`` frames at ``model.input_size``."""
    return cfg.pool.batch_frames * cfg.model.input_size ** 2 * cfg.model.in_channels


def inflight_bytes(cfg: ProjectConfig) -> int:
    """Object-store bytes a pipeline's blocks in flight may use: ``pool.inflight_mb``, or
    32 batches of ``pool.batch_frames`` frames at ``model.input_size`` and at least 512 MiB.

    Measured with resnet18 at 64 px on 2 cores (12 MB batches): 512 MiB ran as fast as Ray
    Data's default (half the object store); 256 MiB starved the actors (19% slower).
    """
    if cfg.pool.inflight_mb is not None:
        return cfg.pool.inflight_mb << 20
    return max(512 << 20, 32 * batch_bytes(cfg))


def limit_inflight(ds: ray.data.Dataset, cfg: ProjectConfig) -> None:
    """Cap the object-store memory ``ds`` (and the datasets derived from it) may fill.

    Ray Data's default budget is half the object store. When the model is slower than decoding
    or reading frames, the queue of blocks waiting for it fills that budget over minutes, and
    the store's pages touched on the way stay resident: peak memory then grows with the run's
    length. The cap applies to this dataset's context only (a copy), not to other pipelines.
    """
    limits = ds.context.execution_options.resource_limits
    ds.context.execution_options.resource_limits = limits.copy(
        object_store_memory=inflight_bytes(cfg))


def frames_dataset(cfg: ProjectConfig, store, where: str) -> ray.data.Dataset:
    """The stored frames matching ``where`` (pushed down into the Lance scan) as a Ray
    dataset of :data:`IMAGE_COLUMNS`, capped by :func:`limit_inflight`.

    Reads hold no CPU slot: actor pools of concurrent runs can then never starve the reads
    that feed them (a deadlock seen with 3 concurrent runs on 2 CPUs).
    """
    from alray.storage.uri import is_remote, storage_options

    ds = ray.data.read_lance(
        store.frames_uri(), columns=IMAGE_COLUMNS, scanner_options={"filter": where},
        num_cpus=0, storage_options=storage_options() if is_remote(store.uri) else None)
    limit_inflight(ds, cfg)
    return ds
