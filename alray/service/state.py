"""Per-replica service state: settings, catalog, open stores, the job runner, caches.

Everything here can be rebuilt from the store and the catalog, so a replica can be killed
at any time: caches only hold what can no longer change (a round's finished selection).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import ray

from alray.config import ProjectConfig
from alray.exports import SELECTION_COLUMNS
from alray.exports import SELECTION_FINAL as _FINAL
from alray.rounds import RoundState
from alray.service.catalog import Catalog, ConsistentStore
from alray.service.errors import Conflict, NotFound, Unavailable
from alray.service.exports import MediaSigner
from alray.service.jobs import get_runner
from alray.service.roots import DataRoots
from alray.service.settings import ServiceSettings
from alray.service.writer import get_writer

__all__ = ["Project", "ServiceState", "SELECTION_FINAL"]

log = logging.getLogger(__name__)

#: Round states in which the round's selection is complete and can no longer change
#: (shared with the CLI's local exports: :mod:`alray.exports`).
SELECTION_FINAL = {RoundState(s) for s in _FINAL}
_SELECTION_COLUMNS = SELECTION_COLUMNS


@dataclass
class Project:
    """An open project: its config, store and creation time."""

    name: str
    cfg: ProjectConfig
    store: ConsistentStore
    created_at: float

    _classes: list[str] | None = None

    def classes(self) -> list[str]:
        """Class names (fixed once ingested, so cached once known)."""
        if self._classes:
            return self._classes
        self._classes = [str(c) for c in (self.store.get_meta("classes") or [])]
        return self._classes

    def classes_known(self) -> bool:
        """True once the class names are cached (no storage read needed)."""
        return bool(self._classes)

    _has_frames: bool = False

    def has_frames(self) -> bool:
        """True once the project has a frames table (cached once true)."""
        self._has_frames = self._has_frames or self.store.has_frames()
        return self._has_frames

    def frames_known(self) -> bool:
        """True once ``has_frames`` has been seen true (no storage read needed)."""
        return self._has_frames

    def num_classes(self) -> int | None:
        return self.cfg.model.num_classes or (len(self.classes()) or None)


class ServiceState:
    """What one replica holds.

    Args:
        settings: the service settings.
        tokens: SHA-256 digest -> scope of the accepted bearer tokens (a list of digests:
            all ``admin``).
    """

    def __init__(self, settings: ServiceSettings, tokens: dict[str, str] | list[str]):
        self.settings = settings
        if not isinstance(tokens, dict):
            tokens = dict.fromkeys(tokens, "admin")
        self.tokens = {**settings.token_scopes(), **tokens}
        self.catalog = Catalog(settings.service_root)
        key = settings.signing_key.encode() or self.catalog.signing_key()
        self.signer = MediaSigner(key, settings.url_expiry_s)
        self.roots = DataRoots.from_settings(settings.data_roots, settings.config_dir,
                                             settings.service_root)
        self._projects: dict[str, Project] = {}
        self._selections: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._writer = None
        self._runner = None

    # ---- projects -----------------------------------------------------------------------
    def open_project(self, name: str) -> Project | None:
        """The project if this replica has it open already (never touches storage)."""
        return self._projects.get(name)

    def cached_selection(self, name: str, n: int) -> list[dict[str, Any]] | None:
        """Round ``n``'s final selection if cached (never touches storage)."""
        return self._selections.get((name, n))

    def project(self, name: str) -> Project:
        """The open project ``name``.

        Raises:
            NotFound: no such project.
        """
        p = self._projects.get(name)
        if p is not None:
            return p
        try:
            found = self.catalog.project(name)
            if found is not None:
                cfg, created = found
                p = Project(name, cfg, ConsistentStore(cfg.storage.uri), created)
        except Exception as err:  # a broken catalog entry or store: this project only
            log.exception("project %r cannot be opened", name)
            raise Unavailable(f"project {name!r} cannot be opened ({type(err).__name__}); "
                              "see the service log") from None
        if found is None:
            raise NotFound(f"project {name!r} does not exist (POST /v1/projects creates it)")
        with self._lock:
            return self._projects.setdefault(name, p)

    def http_created(self, p: Project) -> bool:
        """True for a project created over HTTP (its store is the service root's own), whose
        locations must lie under the data roots; False for the config ``alray serve`` was
        started with (the operator's own)."""
        return p.cfg.storage.uri == self.catalog.default_storage_uri(p.name)

    def may_serve(self, p: Project, uri: str) -> bool:
        """True if ``/media`` may read ``uri`` for ``p``: under a data root, or (the served
        config's project only) under its own pool location."""
        if self.roots.allows(uri):
            return True
        if self.http_created(p):
            return False
        return DataRoots([p.cfg.pool.uri]).allows(uri)

    def create_project(self, cfg: ProjectConfig) -> Project:
        """Register a project.

        Raises:
            Conflict: the name is taken.
        """
        if not self.catalog.add_project(cfg):
            raise Conflict(f"project {cfg.name!r} already exists")
        return self.project(cfg.name)

    def writer(self, *, renew: bool = False):
        """The service root's label writer actor (see :mod:`alray.service.writer`).

        Args:
            renew: look the actor up again (the cached handle's actor died).
        """
        if self._writer is None or renew:
            self._writer = get_writer(self.settings.service_root)
        return self._writer

    def base_url(self, scope: dict[str, Any]) -> str:
        """Where exported URLs point: ``public_url``, else ``bind_url``, else the address the
        replica's socket is bound to (the ASGI ``server``), never the request's Host header."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/") + "/"
        host, port = scope.get("server") or ("127.0.0.1", 8000)
        bound = urlparse(self.settings.bind_url or "")
        if bound.hostname and bound.hostname not in ("0.0.0.0", "::"):
            return self.settings.bind_url.rstrip("/") + "/"
        port = bound.port or port  # listening on every address: the one this socket has
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    # ---- jobs ---------------------------------------------------------------------------
    def runner(self):
        """The job runner actor (recreated, resuming unfinished jobs, if it died)."""
        if self._runner is not None:
            try:
                ray.get(self._runner.ping.remote(), timeout=30)
                return self._runner
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                log.warning("job runner is gone; starting a new one")
        self._runner = get_runner(self.settings.service_root, self.roots.roots)
        ray.get(self._runner.ping.remote(), timeout=60)
        return self._runner

    def submit(self, project: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Start a background job.

        Raises:
            Conflict: a job of this kind is already queued or running for the project.
        """
        out = ray.get(self.runner().submit.remote(project, kind, params, self.roots.roots),
                      timeout=60)
        if "conflict" in out:
            raise Conflict(out["conflict"], job_id=out["job"]["job_id"])
        return out["job"]

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.catalog.job(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return job

    # ---- selections ---------------------------------------------------------------------
    def round(self, p: Project, n: int) -> dict[str, Any]:
        rec = p.store.get_round(n)
        if rec is None:
            raise NotFound(f"project {p.name!r} has no round {n}")
        return rec

    def selection(self, p: Project, n: int) -> list[dict[str, Any]]:
        """The frames selected in round ``n``, in ``frame_id`` order (cached once final).

        Raises:
            NotFound: no such round.
            Conflict: the round has not finished selecting yet.
        """
        key = (p.name, n)
        rows = self._selections.get(key)
        if rows is not None:
            return rows
        rec = self.round(p, n)
        state = rec["state"]
        if state == RoundState.FAILED:  # failed after selecting: the selection stands
            state = rec["diagnostics"].get("failed_state", state)
        if state not in SELECTION_FINAL:
            raise Conflict(f"round {n} is {rec['state']}: its selection is not final yet")
        rows = p.store.read_frames(_SELECTION_COLUMNS, f"selected_round = {int(n)}").to_pylist()
        from alray.pipeline.select import attach_selection  # the selection record's fields

        rows = attach_selection(p.store, n, rows)
        with self._lock:
            self._selections[key] = rows
        return rows
