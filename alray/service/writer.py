"""The label writer: one actor per service root that owns every label write.

The ingress replicas forward label batches here instead of writing LanceDB themselves, so

- a replica's event loop never shares its process (and GIL) with LanceDB commits: selection
  pages stay fast while labels stream in;
- all replicas share one writer and one :class:`~alray.service.intake.LabelIntake` per
  project: group commit spans replicas, and the read-judge-write of a batch is never raced by
  another replica (two replicas could otherwise both accept conflicting labels for a frame).

Each call returns only after its labels are committed, so a reply is a durable answer. The
actor is detached (it outlives a replica restart) and stateless beyond open stores: a new one
rebuilds everything from the stores.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import ray

from alray.labels import LabelItem, LabelResult
from alray.service.catalog import ConsistentStore
from alray.service.intake import LabelIntake

__all__ = ["LabelWriter", "get_writer", "writer_name"]

log = logging.getLogger(__name__)
_NAMESPACE = "alray"


def writer_name(root: str) -> str:
    """Name of the label writer actor of a service root."""
    return "alray-labels-" + hashlib.sha256(root.encode()).hexdigest()[:12]


class LabelWriter:
    """Stores label batches for the projects of one service root (a Ray actor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._intakes: dict[str, LabelIntake] = {}

    def warm(self, storage_uris: list[str]) -> int:
        """Open the intakes (and label tables) of these projects ahead of their first batch,
        so the first annotator does not pay for opening LanceDB; how many opened."""
        opened = 0
        for uri in storage_uris:
            try:
                store = self._intake(uri).store
                if store.has_frames():  # the two lookups every batch makes, on no key
                    store.count_frames("frame_id = ''")
                    store.label_events("idempotency_key = ''")
                opened += 1
            except Exception as err:  # a project without tables yet, or unreadable: lazily later
                log.info("label writer: not warming %s: %s", uri, err)
        return opened

    def _intake(self, storage_uri: str) -> LabelIntake:
        with self._lock:
            intake = self._intakes.get(storage_uri)
            if intake is None:
                intake = self._intakes[storage_uri] = LabelIntake(ConsistentStore(storage_uri))
            return intake

    def submit(self, storage_uri: str, items: list[LabelItem], *, source: str, overwrite: bool,
               num_classes: int | None, rejected: list[dict[str, Any]]) -> list[LabelResult]:
        """Log ``rejected`` (items refused before judging), then judge and store ``items``."""
        intake = self._intake(storage_uri)
        intake.store.append_label_events(rejected)
        return intake.submit(items, source=source, overwrite=overwrite, num_classes=num_classes)


_RemoteWriter = ray.remote(LabelWriter)


def get_writer(root: str):
    """The label writer actor of ``root``: the live one, or a new one."""
    return _RemoteWriter.options(
        name=writer_name(root), namespace=_NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=64, max_restarts=-1).remote()
