"""Prometheus metrics of the service (``GET /metrics``), next to Ray's own exporter.

Counters of this replica (labels received by outcome) plus gauges read from the stores and
the catalog at scrape time (frames by status, frames scored, label events, round durations,
job queues), so the figures survive restarts and agree across replicas.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from alray.service.state import ServiceState

__all__ = ["LABELS_RECEIVED", "REGISTRY", "render_metrics"]

REGISTRY = CollectorRegistry(auto_describe=True)
LABELS_RECEIVED = Counter("alray_labels_received", "Label items received over HTTP by this "
                          "replica, by outcome.", ["project", "status"], registry=REGISTRY)
_CACHE_S = 5.0


class _StoreCollector:
    """Gauges computed from the catalog and project stores (cached for a few seconds)."""

    def __init__(self):
        self.state: ServiceState | None = None
        self._at = 0.0
        self._families: list = []

    def collect(self):
        if self.state is None:
            return []
        if time.monotonic() - self._at > _CACHE_S:
            self._families = self._compute(self.state)
            self._at = time.monotonic()
        return self._families

    def _compute(self, state: ServiceState) -> list:
        frames = GaugeMetricFamily("alray_frames", "Frames in the store by split and status.",
                                   labels=["project", "split", "status"])
        scored = GaugeMetricFamily("alray_frames_scored", "Frames with a stored score.",
                                   labels=["project"])
        events = GaugeMetricFamily("alray_label_events", "Label submissions in the audit log.",
                                   labels=["project", "accepted"])
        awaited = GaugeMetricFamily("alray_labels_awaited", "Selected frames still unlabeled.",
                                    labels=["project"])
        duration = GaugeMetricFamily("alray_round_duration_seconds", "Seconds spent in each "
                                     "round's steps (sum of step timings).",
                                     labels=["project", "round", "state"])
        jobs = GaugeMetricFamily("alray_jobs", "Background jobs by kind and state.",
                                 labels=["kind", "state"])
        for name in state.catalog.project_names():
            p = state.project(name)
            if p.store.has_frames():
                t = p.store.read_frames(["split", "status", "score"])
                pairs: dict[tuple[str, str], int] = {}
                for sp, st in zip(t["split"].to_pylist(), t["status"].to_pylist(), strict=True):
                    pairs[(sp, st)] = pairs.get((sp, st), 0) + 1
                for (sp, st), c in sorted(pairs.items()):
                    frames.add_metric([name, sp, st], c)
                scored.add_metric([name], t.num_rows - t["score"].null_count)
                awaited.add_metric([name], pairs.get(("pool", "selected"), 0))
            ev = p.store.label_events()
            acc = ev["accepted"].to_pylist()
            events.add_metric([name, "true"], sum(bool(a) for a in acc))
            events.add_metric([name, "false"], sum(not a for a in acc))
            for r in p.store.rounds():
                secs = sum((r["diagnostics"].get("timings") or {}).values())
                duration.add_metric([name, str(r["round"]), r["state"]], secs)
        counts: dict[tuple[str, str], int] = {}
        for j in state.catalog.jobs():
            counts[(j["kind"], j["state"])] = counts.get((j["kind"], j["state"]), 0) + 1
        for (k, s), c in sorted(counts.items()):
            jobs.add_metric([k, s], c)
        return [frames, scored, events, awaited, duration, jobs]


_COLLECTOR = _StoreCollector()
REGISTRY.register(_COLLECTOR)


def render_metrics(state: ServiceState) -> tuple[bytes, str]:
    """The Prometheus exposition text and its content type."""
    _COLLECTOR.state = state
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
