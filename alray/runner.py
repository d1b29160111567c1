"""Embedded runs: ingest a pool and drive rounds to a stop, with the simulated annotator."""

from __future__ import annotations

import logging
from collections.abc import Callable

from alray.config import ProjectConfig
from alray.pipeline.ingest import IngestSummary, ingest
from alray.pipeline.ray_runtime import ensure_ray
from alray.rounds import RoundController
from alray.storage import Store

__all__ = ["learning_curve", "run_project"]

log = logging.getLogger(__name__)


def run_project(cfg: ProjectConfig, *, strategy: str | None = None, seed: int | None = None,
                store_uri: str | None = None,
                on_round: Callable[[dict], None] | None = None) -> tuple[Store, str]:
    """Ingest (idempotent) and run rounds until a stopping rule fires; resumes a stopped-midway
    run from the store. Returns the store and the stop reason."""
    ensure_ray(cfg.ray)
    store = Store(store_uri or cfg.storage.uri)
    summary: IngestSummary = ingest(cfg, store)
    if summary.frames_added:
        log.info("ingested %d frames (%d failed)", summary.frames_added, summary.failed)
    controller = RoundController(cfg, store, strategy=strategy, seed=seed)
    return store, controller.run(on_round=on_round)


def learning_curve(store: Store) -> list[dict]:
    """Per finished round: ``round``, ``labels``, ``val_accuracy``, ``test_accuracy``."""
    return [{"round": r["round"], "labels": r["metrics"].get("labels"),
             "val_accuracy": r["metrics"].get("val_accuracy"),
             "test_accuracy": r["metrics"].get("test_accuracy")}
            for r in store.rounds() if r["state"] in ("COMPLETED", "STOPPED")]
