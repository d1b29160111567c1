"""Start or join Ray once per process."""

from __future__ import annotations

import logging
import os

import ray

from alray.config import RayConfig

__all__ = ["ensure_ray"]


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
