"""Prometheus metrics of the service (``GET /metrics``), next to Ray's own exporter.

Counters of this replica (labels received by outcome) plus gauges read from the stores and
the catalog at scrape time (frames by status, frames scored, label events, round durations,
job queues), so the figures survive restarts and agree across replicas.

Project names are shown only to the holder of ``ALRAY_METRICS_TOKEN``: without it the series
are summed over projects (the ``project`` label dropped). A project whose store cannot be read
is logged and counted in ``alray_projects_unreadable``; it never fails the scrape.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from alray.storage.schema import FrameStatus, Split

if TYPE_CHECKING:
    from alray.service.state import ServiceState

__all__ = ["LABELS_RECEIVED", "REGISTRY", "render_metrics"]

log = logging.getLogger(__name__)

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
        broken = GaugeMetricFamily("alray_projects_unreadable", "Projects in the catalog whose "
                                   "config or store cannot be read (see the service log).")
        unreadable = 0
        for name in state.catalog.project_names():
            try:  # one broken project never fails the scrape
                self._project(state, name, frames, scored, events, awaited, duration)
            except Exception:
                log.exception("metrics: project %r cannot be read; skipped", name)
                unreadable += 1
        broken.add_metric([], unreadable)
        counts: dict[tuple[str, str], int] = {}
        for j in state.catalog.jobs():
            counts[(j["kind"], j["state"])] = counts.get((j["kind"], j["state"]), 0) + 1
        for (k, s), c in sorted(counts.items()):
            jobs.add_metric([k, s], c)
        return [frames, scored, events, awaited, duration, jobs, broken]

    @staticmethod
    def _project(state: ServiceState, name: str, frames, scored, events, awaited,
                 duration) -> None:
        """Add one project's series (all or nothing: gathered first, then added)."""
        adds: list[tuple] = []
        p = state.project(name)
        if p.has_frames():  # indexed counts (BITMAP on split/status): no frame is read
            store = p.store
            pairs = {(sp, st): store.count_status(st, split=sp)
                     for sp in Split for st in FrameStatus}
            for (sp, st), c in pairs.items():
                if c:
                    adds.append((frames, [name, sp.value, st.value], c))
            adds.append((scored, [name], store.count_frames("score IS NOT NULL")))
            adds.append((awaited, [name], pairs[(Split.POOL, FrameStatus.SELECTED)]))
        accepted, total = (p.store.count_label_events(True), p.store.count_label_events())
        adds.append((events, [name, "true"], accepted))
        adds.append((events, [name, "false"], total - accepted))
        for r in p.store.rounds():
            secs = sum((r["diagnostics"].get("timings") or {}).values())
            adds.append((duration, [name, str(r["round"]), r["state"]], secs))
        for family, labels, value in adds:
            family.add_metric(labels, value)


_COLLECTOR = _StoreCollector()
REGISTRY.register(_COLLECTOR)


class _Summed:
    """The registry's families with the ``project`` label summed away."""

    def collect(self):
        for fam in REGISTRY.collect():
            out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            sums: dict[tuple, list] = {}
            for smp in fam.samples:
                labels = {k: v for k, v in smp.labels.items() if k != "project"}
                key = (smp.name, tuple(sorted(labels.items())))
                if key not in sums:
                    sums[key] = [labels, smp.value]
                elif smp.name.endswith("_created"):  # a creation time: the earliest
                    sums[key][1] = min(sums[key][1], smp.value)
                else:
                    sums[key][1] += smp.value
            for (name, _), (labels, value) in sums.items():
                out.add_sample(name, labels, value)
            yield out


_SUMMED = CollectorRegistry(auto_describe=False)
_SUMMED.register(_Summed())


def render_metrics(state: ServiceState, *, per_project: bool = False) -> tuple[bytes, str]:
    """The Prometheus exposition text and its content type.

    Args:
        state: the replica's state.
        per_project: label series by project (for the metrics token's holder); else sum
            them over projects.
    """
    _COLLECTOR.state = state
    return generate_latest(REGISTRY if per_project else _SUMMED), CONTENT_TYPE_LATEST
