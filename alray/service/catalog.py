"""The service catalog: which projects exist (and where their stores are) and every job.

A LanceDB database at ``<service_root>/_alray`` with two tables, ``projects`` and ``jobs``.
Each project's config is also kept in its own store's ``meta`` table (key
``service_config``), so a project store is self-describing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from datetime import timedelta
from typing import Any

import lancedb
import pyarrow as pa

from alray.config import ProjectConfig, validate_config
from alray.storage import Store, sql_list
from alray.storage.uri import is_remote, join, storage_options

__all__ = ["ACTIVE_JOB_STATES", "Catalog", "ConsistentStore", "JOB_STATES"]

log = logging.getLogger(__name__)

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
_SECRETS = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.string()),
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
        if not replace and self.project_names(where=f"name = {_quote(cfg.name)}"):
            return False
        # The store first: a catalog row always names a store that exists.
        ConsistentStore(cfg.storage.uri).set_meta("service_config", json.loads(row["config"]))
        merge = self._table("projects", _PROJECTS).merge_insert("name")
        if replace:
            merge = merge.when_matched_update_all()
        res = merge.when_not_matched_insert_all().execute(
            pa.Table.from_pylist([row], schema=_PROJECTS))
        return bool(res.num_inserted_rows or res.num_updated_rows)

    def project(self, name: str) -> tuple[ProjectConfig, float] | None:
        """The project's config and creation time, or None."""
        rows = (self._table("projects", _PROJECTS).search()
                .where(f"name = {_quote(name)}").limit(1).to_arrow().to_pylist())
        if not rows:
            return None
        return validate_config(json.loads(rows[0]["config"])), rows[0]["created_at"]

    def project_names(self, where: str | None = None) -> list[str]:
        q = self._table("projects", _PROJECTS).search().select(["name"])
        t = (q.where(where) if where else q).limit(None).to_arrow()
        return sorted(t["name"].to_pylist())

    # ---- secrets ------------------------------------------------------------------------
    def signing_key(self) -> bytes:
        """The service root's media signing key: 32 random bytes made once, then kept.

        A local root keeps it in ``_alray/signing.key`` (mode 0600, created exclusively, so
        concurrent replicas agree); an ``s3://`` root in the catalog's ``secrets`` table (the
        first insert wins).
        """
        fresh = secrets.token_hex(32)
        if not is_remote(self.root):
            path = os.path.join(self.root, "_alray", "signing.key")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                for _ in range(50):  # another replica is writing it
                    with open(path) as f:
                        text = f.read().strip()
                    if text:
                        return bytes.fromhex(text)
                    time.sleep(0.1)
                raise RuntimeError("the signing key file is empty") from None
            with os.fdopen(fd, "w") as f:
                f.write(fresh)
            log.info("generated the media signing key (set ALRAY_SIGNING_KEY to choose one)")
            return bytes.fromhex(fresh)
        table = self._table("secrets", _SECRETS)
        (table.merge_insert("key").when_not_matched_insert_all()
         .execute(pa.Table.from_pylist([{"key": "signing_key", "value": fresh}],
                                       schema=_SECRETS)))
        rows = table.search().where("key = 'signing_key'").limit(1).to_arrow().to_pylist()
        return bytes.fromhex(rows[0]["value"])

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
        rows = self.jobs(f"job_id = {_quote(job_id)}")
        return rows[0] if rows else None

    def active_jobs(self, project: str | None = None, kind: str | None = None) -> list[dict]:
        where = f"state IN {sql_list(ACTIVE_JOB_STATES)}"
        if project is not None:
            where += f" AND project = {_quote(project)}"
        if kind is not None:
            where += f" AND kind = {_quote(kind)}"
        return self.jobs(where)


def _quote(value: str) -> str:
    """A SQL string literal."""
    return sql_list([value])[1:-1]
