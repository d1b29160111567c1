"""The service catalog: which projects exist (and where their stores are) and every job.

A LanceDB database at ``<service_root>/_alray`` with two tables, ``projects`` and ``jobs``.
Each project's config is also kept in its own store's ``meta`` table (key
``service_config``), so a project store is self-describing.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import lancedb
import pyarrow as pa

from alray.config import ProjectConfig, validate_config
from alray.storage import Store, sql_list
from alray.storage.uri import is_remote, join, storage_options

__all__ = ["ACTIVE_JOB_STATES", "Catalog", "ConsistentStore", "JOB_STATES"]

JOB_STATES = ("queued", "running", "succeeded", "failed")
ACTIVE_JOB_STATES = ("queued", "running")

_PROJECTS = pa.schema([
    pa.field("name", pa.string(), nullable=False),
    pa.field("storage_uri", pa.string()),
    pa.field("config", pa.string()),  # JSON
    pa.field("created_at", pa.float64()),
])
_JOBS = pa.schema([
    pa.field("job_id", pa.string(), nullable=False),
    pa.field("project", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("state", pa.string()),
    pa.field("params", pa.string()),  # JSON
    pa.field("progress", pa.string()),  # JSON
    pa.field("result", pa.string()),  # JSON
    pa.field("error", pa.string()),
    pa.field("attempts", pa.int64()),
    pa.field("created_at", pa.float64()),
    pa.field("updated_at", pa.float64()),
])
_JSON_FIELDS = ("params", "progress", "result")


class ConsistentStore(Store):
    """A :class:`Store` whose reads always see other processes' latest commits.

    The service reads from one process (the replica) what another (the job runner) writes,
    so it cannot use LanceDB's default of never re-checking a table's version.
    """

    def __init__(self, uri: str):
        super().__init__(uri)
        self.db = lancedb.connect(self.uri, read_consistency_interval=timedelta(0),
                                  storage_options=storage_options() if is_remote(uri) else None)


def _connect(uri: str):
    return lancedb.connect(uri, read_consistency_interval=timedelta(0),
                           storage_options=storage_options() if is_remote(uri) else None)


class Catalog:
    """Projects and jobs of one service root.

    Args:
        root: the service root URI (a folder or ``s3://bucket/prefix``).
    """

    def __init__(self, root: str):
        self.root = root
        self.db = _connect(join(root, "_alray"))
        self._tables: dict[str, Any] = {}

    def _table(self, name: str, schema: pa.Schema):
        if name not in self._tables:
            self._tables[name] = self.db.create_table(name, schema=schema, exist_ok=True)
        return self._tables[name]

    # ---- projects -----------------------------------------------------------------------
    def default_storage_uri(self, name: str) -> str:
        return join(self.root, "projects", name)

    def add_project(self, cfg: ProjectConfig, *, replace: bool = False) -> bool:
        """Register a project (its store is ``cfg.storage.uri``).

        Args:
            cfg: the project config.
            replace: update the config of an existing project of that name (``alray serve``
                re-reading its config file) instead of refusing.

        Returns:
            False if the name exists (and ``replace`` is not set).
        """
        row = {"name": cfg.name, "storage_uri": cfg.storage.uri,
               "config": cfg.model_dump_json(), "created_at": time.time()}
        found = self.project(cfg.name) if replace else None
        if found is not None:
            row["created_at"] = found[1]
        merge = self._table("projects", _PROJECTS).merge_insert("name")
        if replace:
            merge = merge.when_matched_update_all()
        res = merge.when_not_matched_insert_all().execute(
            pa.Table.from_pylist([row], schema=_PROJECTS))
        if not (res.num_inserted_rows or res.num_updated_rows):
            return False
        ConsistentStore(cfg.storage.uri).set_meta("service_config", json.loads(row["config"]))
        return True

    def project(self, name: str) -> tuple[ProjectConfig, float] | None:
        """The project's config and creation time, or None."""
        rows = (self._table("projects", _PROJECTS).search()
                .where(f"name = {sql_list([name])[1:-1]}").limit(1).to_arrow().to_pylist())
        if not rows:
            return None
        return validate_config(json.loads(rows[0]["config"])), rows[0]["created_at"]

    def project_names(self) -> list[str]:
        t = self._table("projects", _PROJECTS).search().select(["name"]).limit(None).to_arrow()
        return sorted(t["name"].to_pylist())

    # ---- jobs ---------------------------------------------------------------------------
    def put_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a job record (JSON fields as Python values)."""
        row = dict(job, updated_at=time.time())
        row.setdefault("created_at", row["updated_at"])
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row.get(key) or {})
        data = pa.Table.from_pylist([{f: row.get(f) for f in _JOBS.names}], schema=_JOBS)
        (self._table("jobs", _JOBS).merge_insert("job_id").when_matched_update_all()
         .when_not_matched_insert_all().execute(data))
        return dict(job, updated_at=row["updated_at"], created_at=row["created_at"])

    def jobs(self, where: str | None = None) -> list[dict[str, Any]]:
        """Job records matching a SQL filter, oldest first."""
        q = self._table("jobs", _JOBS).search()
        if where:
            q = q.where(where)
        rows = q.limit(None).to_arrow().to_pylist()
        for r in rows:
            for key in _JSON_FIELDS:
                r[key] = json.loads(r[key] or "{}")
        return sorted(rows, key=lambda r: r["created_at"])

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.jobs(f"job_id = {sql_list([job_id])[1:-1]}")
        return rows[0] if rows else None

    def active_jobs(self, project: str | None = None, kind: str | None = None) -> list[dict]:
        where = f"state IN {sql_list(ACTIVE_JOB_STATES)}"
        if project is not None:
            where += f" AND project = {sql_list([project])[1:-1]}"
        if kind is not None:
            where += f" AND kind = {sql_list([kind])[1:-1]}"
        return self.jobs(where)
