"""Label intake with group commit: concurrent submissions to a project share one write.

Each request enqueues its items and then takes the project's write lock; whoever holds it
writes *every* pending request in one :func:`~alray.labels.submit_labels` call per run of
requests with the same ``(source, overwrite)``, and hands each request its own results. The
outcome equals processing the requests one by one in arrival order (an idempotency key or a
label accepted earlier in the combined batch is seen by the later items), while 50 clients
cost a few LanceDB commits instead of 50.

One request never fails another's: when a combined write fails, each of its requests is
written again alone, in order, so only the request whose write fails on its own gets the
error. (A write that failed between the audit log and the frames commit is completed by the
retry: see :func:`~alray.labels.submit_labels`.)
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from alray.labels import LabelItem, LabelResult, submit_labels
from alray.storage import Store

__all__ = ["COMPACT_EVERY", "LabelIntake"]

log = logging.getLogger(__name__)

#: Compact ``frames`` and ``label_events`` after this many label commits: every commit adds a
#: small fragment (and deletion files), and scans slow down as they pile up. Compaction runs in
#: a background thread, off the request path and outside the write lock: a label commit that
#: races it wins (Lance rebases the update), and the preempted compaction retries next time.
COMPACT_EVERY = 20


@dataclass
class _Request:
    items: list[LabelItem]
    source: str
    overwrite: bool
    future: Future = field(default_factory=Future)


class LabelIntake:
    """Serialises and batches label writes to one project store (held by the service's
    :class:`~alray.service.writer.LabelWriter`, so one per project across all replicas).

    Args:
        store: the project store.
    """

    def __init__(self, store: Store):
        self.store = store
        self._write = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._commits = 0
        self._compactor: threading.Thread | None = None

    def submit(self, items: list[LabelItem], *, source: str, overwrite: bool,
               num_classes: int | None) -> list[LabelResult]:
        """Store ``items`` (with everything else pending); their results, in order."""
        req = _Request(items, source, overwrite)
        with self._queue_lock:
            self._queue.append(req)
        with self._write:
            if not req.future.done():
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._write_batch(batch, num_classes)
                self._commits += 1
                if self._commits % COMPACT_EVERY == 0:
                    self.compact_in_background()
        return req.future.result()

    def compact_in_background(self) -> None:
        """Start a compaction unless one is running."""
        if self._compactor is not None and self._compactor.is_alive():
            return
        self._compactor = threading.Thread(target=self._compact, name="label-compaction",
                                           daemon=True)
        self._compactor.start()

    def wait_for_compaction(self, timeout: float | None = None) -> None:
        """Block until a running compaction ends (tests, clean shutdown)."""
        if self._compactor is not None:
            self._compactor.join(timeout)

    def _compact(self) -> None:
        """Merge the small fragments label commits leave behind (tags keep old versions) and
        bring the key indices up to date."""
        for name, key in (("frames", "frame_id"), ("label_events", "idempotency_key")):
            try:
                self.store.ensure_key_index(name, key)
                self.store.db.open_table(name).optimize()
            except Exception as err:  # a label commit preempted it: compact next time
                log.info("compaction of %s deferred: %s", name, str(err).split(",")[0])

    def _write_batch(self, batch: list[_Request], num_classes: int | None) -> None:
        start = 0
        while start < len(batch):  # runs of requests that share (source, overwrite)
            key = (batch[start].source, batch[start].overwrite)
            stop = start
            while stop < len(batch) and (batch[stop].source, batch[stop].overwrite) == key:
                stop += 1
            self._write_run(batch[start:stop], num_classes)
            start = stop

    def _write_run(self, run: list[_Request], num_classes: int | None) -> None:
        """Write requests of one ``(source, overwrite)`` in one commit; if that fails, write
        them one by one."""
        source, overwrite = run[0].source, run[0].overwrite
        try:
            results = submit_labels(self.store, [i for r in run for i in r.items],
                                    source=source, overwrite=overwrite, num_classes=num_classes)
        except Exception as err:
            if len(run) == 1:
                run[0].future.set_exception(err)
                return
            log.warning("group commit of %d label requests failed (%s: %s); writing each "
                        "alone", len(run), type(err).__name__, err)
            for r in run:
                self._write_run([r], num_classes)
            return
        at = 0
        for r in run:
            r.future.set_result(results[at:at + len(r.items)])
            at += len(r.items)
