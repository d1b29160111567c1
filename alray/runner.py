"""Embedded runs: ingest a pool and drive rounds to a stop, with the simulated annotator."""

from __future__ import annotations

import logging
from collections.abc import Callable

from alray.config import ProjectConfig
from alray.pipeline.ingest import IngestSummary, ingest
from alray.pipeline.ray_runtime import ensure_ray
from alray.preflight import check_project
from alray.rounds import RoundController
from alray.storage import Store
from alray.storage.schema import FrameStatus
from alray.storage.store import frame_filter

__all__ = ["awaiting_labels", "learning_curve", "round_seconds", "run_project"]

log = logging.getLogger(__name__)


def run_project(cfg: ProjectConfig, *, strategy: str | None = None, seed: int | None = None,
                store_uri: str | None = None,
                on_round: Callable[[dict], None] | None = None,
                on_ingest: Callable[[IngestSummary], None] | None = None,
                check: bool = True) -> tuple[Store, str]:
    """Ingest (idempotent) and run rounds until a stopping rule fires; resumes a stopped-midway
    run from the store. Returns the store and the stop reason (``awaiting_labels`` when a
    round's selection has no ground truth to simulate the annotator with).

    Args:
        cfg: the project config.
        strategy: overrides ``acquisition.strategy``.
        seed: overrides ``seed``.
        store_uri: overrides ``storage.uri``.
        on_round: called with each round's record after it advanced.
        on_ingest: called with the ingest summary.
        check: run :func:`alray.preflight.check_project` before Ray starts.

    Raises:
        ConfigError: ``check`` found a problem (dotted key and reason).
    """
    if check:
        check_project(cfg, strategies=[strategy] if strategy else [],
                      strategy_flag="--strategy", store_uri=store_uri)
    ensure_ray(cfg.ray)
    store = Store(store_uri or cfg.storage.uri)
    summary: IngestSummary = ingest(cfg, store)
    if summary.frames_added:
        log.info("ingested %d frames (%d failed)", summary.frames_added, summary.failed)
    if on_ingest:
        on_ingest(summary)
    controller = RoundController(cfg, store, strategy=strategy, seed=seed)
    return store, controller.run(on_round=on_round)


def learning_curve(store: Store) -> list[dict]:
    """Per finished round: ``round``, ``labels``, ``val_accuracy``, ``test_accuracy``."""
    return [{"round": r["round"], "labels": r["metrics"].get("labels"),
             "val_accuracy": r["metrics"].get("val_accuracy"),
             "test_accuracy": r["metrics"].get("test_accuracy")}
            for r in store.rounds() if r["state"] in ("COMPLETED", "STOPPED")]


def round_seconds(rec: dict) -> float:
    """Seconds a round's steps took (the sum of its recorded step timings)."""
    return float(sum((rec["diagnostics"].get("timings") or {}).values()))


def awaiting_labels(store: Store) -> tuple[int, int] | None:
    """``(round, frames still unlabeled)`` of the round waiting for labels, if one is."""
    rounds = store.rounds()
    if not rounds or rounds[-1]["state"] != "AWAITING_LABELS":
        return None
    n = int(rounds[-1]["round"])
    return n, store.count_frames(frame_filter(status=FrameStatus.SELECTED,
                                               also=f"selected_round = {n}"))
