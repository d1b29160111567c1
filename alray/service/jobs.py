"""Background jobs (ingest, rounds) in one detached Ray actor per service root.

HTTP handlers never train or score: they ask the :class:`JobRunner` actor to start a job,
which runs it in a thread of its own (Ray Data and Ray Train schedule the heavy work on the
cluster) and records its state in the catalog. The actor is detached, so it outlives a Serve
replica; if it dies too, the next runner resumes every job still marked queued/running —
ingest is idempotent and :class:`~alray.rounds.RoundController` resumes a round from the
store, so nothing is repeated or lost.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from typing import Any

import ray

from alray.rounds import RoundController, RoundState
from alray.service.catalog import Catalog, ConsistentStore

__all__ = ["JobRunner", "MAX_ATTEMPTS", "get_runner", "runner_name"]

log = logging.getLogger(__name__)

#: A job resumed this many times (its runner kept dying) is marked failed.
MAX_ATTEMPTS = 3
_NAMESPACE = "alray"


def runner_name(root: str) -> str:
    """Name of the job runner actor of a service root."""
    return "alray-jobs-" + hashlib.sha256(root.encode()).hexdigest()[:12]


class JobRunner:
    """Runs and records background jobs of one service root (a Ray actor).

    Args:
        root: the service root URI (see :class:`~alray.service.catalog.Catalog`).
        data_roots: resolved locations projects created over HTTP may read (see
            :class:`~alray.service.roots.DataRoots`); their manifests' entries are checked
            against them before an ingest reads any.
    """

    def __init__(self, root: str, data_roots: list[str] | None = None):
        self.catalog = Catalog(root)
        self.data_roots = list(data_roots or [])
        self._lock = threading.Lock()  # one writer of job records, one submit at a time
        self._threads: dict[str, threading.Thread] = {}
        for job in self.catalog.active_jobs():
            self._start(job, resumed=True)

    def ping(self) -> int:
        """Number of live job threads (a liveness probe)."""
        return sum(t.is_alive() for t in self._threads.values())

    def submit(self, project: str, kind: str, params: dict[str, Any],
               data_roots: list[str] | None = None) -> dict[str, Any]:
        """Start a job unless the project already has one queued or running.

        One job at a time per project: a round never runs on a half-ingested pool, and two
        rounds never race. ``data_roots`` (the replica's) replaces the runner's.

        Returns:
            ``{"job": record}``, or ``{"conflict": reason, "job": active_job}``.
        """
        with self._lock:
            if data_roots is not None:
                self.data_roots = list(data_roots)
            for job in self.catalog.active_jobs(project):
                if self._alive(job["job_id"]):
                    return {"conflict": f"project {project!r} has a {job['kind']} job "
                                        f"{job['job_id']} {job['state']}",
                            "job": job}
                self._finish(job, "failed", error="the job's runner died; superseded")
            job = self.catalog.put_job({
                "job_id": uuid.uuid4().hex, "project": project, "kind": kind,
                "state": "queued", "params": params, "progress": {}, "result": {},
                "error": None, "attempts": 0})
        self._start(job)
        return {"job": job}

    # ---- internals ----------------------------------------------------------------------
    def _alive(self, job_id: str) -> bool:
        t = self._threads.get(job_id)
        return t is not None and t.is_alive()

    def _start(self, job: dict, resumed: bool = False) -> None:
        if resumed and job.get("attempts", 0) >= MAX_ATTEMPTS:
            self._finish(job, "failed", error=f"gave up after {MAX_ATTEMPTS} attempts")
            return
        t = threading.Thread(target=self._run, args=(job,), daemon=True,
                             name=f"alray-job-{job['job_id'][:8]}")
        self._threads[job["job_id"]] = t
        t.start()

    def _put(self, job: dict, **fields: Any) -> dict:
        job.update(fields)
        with self._lock:
            return self.catalog.put_job(job)

    def _finish(self, job: dict, state: str, **fields: Any) -> None:
        job.update(fields, state=state)
        self.catalog.put_job(job)

    def _run(self, job: dict) -> None:
        self._put(job, state="running", attempts=int(job.get("attempts") or 0) + 1)
        try:
            loaded = self.catalog.project(job["project"])
            if loaded is None:
                raise LookupError(f"project {job['project']!r} is not in the catalog")
            cfg = loaded[0]
            if cfg.storage.uri == self.catalog.default_storage_uri(job["project"]):
                self._check_locations(cfg)  # created over HTTP: only the data roots
            store = ConsistentStore(cfg.storage.uri)
            run = {"ingest": self._ingest, "round": self._round}[job["kind"]]
            result = run(job, cfg, store)
        except Exception as err:  # recorded on the job; the actor keeps serving others
            log.exception("job %s failed", job["job_id"])
            with self._lock:
                self._finish(job, "failed", error=f"{type(err).__name__}: {err}")
            return
        with self._lock:
            self._finish(job, "succeeded", result=result, error=None)

    def _check_locations(self, cfg) -> None:
        """Refuse a project whose pool, weights or manifest entries lie outside the data
        roots (checked again here: the catalog may predate the roots; a manifest's entries
        are known only once it is read).

        Raises:
            Forbidden: a location outside every root (names ALRAY_DATA_ROOTS).
        """
        from alray.service.roots import DataRoots

        roots = DataRoots(self.data_roots)
        roots.check(cfg.pool.uri, "pool.uri")
        if cfg.model.weights_uri:
            roots.check(cfg.model.weights_uri, "model.weights_uri")
        if cfg.pool.format == "manifest":
            from alray.sources.manifest import read_manifest

            roots.check_all(read_manifest(cfg.pool.uri)["uri"], "manifest entry uri")

    def _ingest(self, job: dict, cfg, store: ConsistentStore) -> dict:
        from alray.pipeline.ingest import _listing, ingest

        total = _expected_frames(_listing(cfg).tasks, cfg.pool.limit)
        done = threading.Event()

        def report() -> None:  # progress: frames in the store vs. frames listed
            while not done.wait(1.0):
                n = store.count_frames() if store.has_frames() else 0
                self._put(job, progress={"done": min(n, total or n), "total": total})

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            summary = ingest(cfg, store)
        finally:
            done.set()
            reporter.join()
        n = store.count_frames() if store.has_frames() else 0
        job["progress"] = {"done": n, "total": total if total is not None else n}
        out = summary.to_dict()
        out["failures"] = out["failures"][:100]
        return out

    def _round(self, job: dict, cfg, store: ConsistentStore) -> dict:
        params = job["params"]
        strategy = params.get("strategy")
        rounds = store.rounds()
        force_round = params.get("force_round")
        if (force_round is not None and rounds and rounds[-1]["round"] == force_round
                and rounds[-1]["state"] == RoundState.AWAITING_LABELS):
            RoundController(cfg, store, annotator=None, strategy=strategy,
                            force=True).step_round()

        def progress(rec: dict) -> None:
            self._put(job, progress={"round": rec["round"], "state": rec["state"]})

        t0 = time.perf_counter()
        outcome = RoundController(cfg, store, annotator=None, strategy=strategy).run(
            on_round=progress)
        last = store.rounds()[-1]
        job["progress"] = {"round": last["round"], "state": last["state"]}
        return {"outcome": outcome, "round": last["round"], "state": last["state"],
                "seconds": round(time.perf_counter() - t0, 3)}


def _expected_frames(tasks: list[dict], limit: int | None) -> int | None:
    """Frames a listing will produce, where its work items say (IDX ranges, file lists)."""
    n = 0
    for t in tasks:
        if "start" in t and "stop" in t:
            n += int(t["stop"]) - int(t["start"])
        elif "uris" in t:
            n += len(t["uris"])
        else:
            return limit
    return min(n, limit) if limit is not None else n


_RemoteRunner = ray.remote(JobRunner)


def get_runner(root: str, data_roots: list[str] | None = None):
    """The job runner actor of ``root``: the live one, or a new one (which resumes jobs)."""
    return _RemoteRunner.options(
        name=runner_name(root), namespace=_NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=32, max_restarts=0).remote(root, data_roots)
