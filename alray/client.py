"""A Python client of the alray HTTP service (httpx).

Example::

    from alray.client import Client

    with Client("http://127.0.0.1:8000", token="...") as c:   # +SKIP (needs a service)
        c.create_project(config_dict)
        c.wait(c.ingest("quickstart")["job_id"])
        c.wait(c.start_round("quickstart")["job"]["job_id"])
        tasks = list(c.selection("quickstart", 0, format="label-studio"))
        c.push_labels("quickstart", [{"frame_id": ..., "label": 3}])
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

__all__ = ["AlrayError", "Client"]


class AlrayError(RuntimeError):
    """The service answered with an error.

    Attributes:
        status: the HTTP status code.
        body: the decoded JSON error body (``{"error", "detail", ...}``).
    """

    def __init__(self, status: int, body: Any):
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body


def _first_token(spec: str) -> str | None:
    """The first token of an ``ALRAY_API_TOKENS`` value, without its ``scope:`` prefix."""
    first = spec.split(",")[0].strip()
    scope, sep, token = first.partition(":")
    return (token.strip() if sep and scope in ("read", "label", "admin") else first) or None


class Client:
    """Talk to ``alray serve``.

    Args:
        url: the service base URL (default ``$ALRAY_URL`` or ``http://127.0.0.1:8000``).
        token: a bearer token (default: ``$ALRAY_TOKEN``, else the first of
            ``$ALRAY_API_TOKENS``, its ``scope:`` prefix dropped).
        timeout: seconds per request.
        transport: an httpx transport (tests, retries).
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        url = url or os.environ.get("ALRAY_URL", "http://127.0.0.1:8000")
        token = token or os.environ.get("ALRAY_TOKEN") or _first_token(
            os.environ.get("ALRAY_API_TOKENS", ""))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                 transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202),
              **kwargs) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        if r.status_code not in ok:
            try:
                body = r.json()
            except ValueError:
                body = r.text
            raise AlrayError(r.status_code, body)
        return r

    # ---- projects and jobs --------------------------------------------------------------
    def create_project(self, config: dict[str, Any]) -> dict:
        """Create a project from a config dict (``ProjectConfig`` as JSON)."""
        return self._call("POST", "/v1/projects", json=config).json()

    def project(self, project: str) -> dict:
        return self._call("GET", f"/v1/projects/{project}").json()

    def ingest(self, project: str) -> dict:
        """Start ingesting the project's pool; returns the job."""
        return self._call("POST", f"/v1/projects/{project}/ingest").json()

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, *, timeout: float = 3600, poll: float = 1.0) -> dict:
        """Poll a job until it succeeds or fails; returns its final record.

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in ("succeeded", "failed"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout}s")
            time.sleep(poll)

    # ---- rounds -------------------------------------------------------------------------
    def start_round(self, project: str, *, force: bool = False,
                    strategy: str | None = None) -> dict:
        """Start (or resume) the next round; returns ``{"job", "next_round"}``."""
        body: dict[str, Any] = {"force": force}
        if strategy:
            body["strategy"] = strategy
        return self._call("POST", f"/v1/projects/{project}/rounds", json=body).json()

    def rounds(self, project: str) -> list[dict]:
        return self._call("GET", f"/v1/projects/{project}/rounds").json()["data"]

    def round(self, project: str, n: int) -> dict:
        return self._call("GET", f"/v1/projects/{project}/rounds/{n}").json()

    def selection_pages(self, project: str, n: int, *, format: str = "label-studio",
                        limit: int = 500) -> Iterator[dict]:
        """Every page of round ``n``'s selection (JSON formats: label-studio, coco)."""
        cursor = None
        while True:
            params = {"format": format, "limit": limit, **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", f"/v1/projects/{project}/rounds/{n}/selection",
                              params=params).json()
            yield page
            cursor = page["next_cursor"]
            if not cursor:
                return

    def selection(self, project: str, n: int, *, format: str = "jsonl",
                  limit: int = 500) -> Iterator[dict]:
        """Every selected frame of round ``n``, one item at a time."""
        if format != "jsonl":
            for page in self.selection_pages(project, n, format=format, limit=limit):
                yield from page["items"]
            return
        cursor = None
        while True:
            params = {"format": "jsonl", "limit": limit, **({"cursor": cursor} if cursor else {})}
            r = self._call("GET", f"/v1/projects/{project}/rounds/{n}/selection", params=params)
            for line in r.text.splitlines():
                if line.strip():
                    yield json.loads(line)
            cursor = r.headers.get("X-Next-Cursor")
            if not cursor:
                return

    def export_coco(self, project: str, n: int) -> dict:
        """Round ``n``'s selection as one COCO document (images and categories)."""
        images, cats = [], []
        for page in self.selection_pages(project, n, format="coco"):
            images += page["items"]
            cats = page["categories"] or cats
        return {"images": images, "categories": cats, "annotations": []}

    # ---- labels and frames --------------------------------------------------------------
    def push_labels(self, project: str, labels: Iterable[dict], *, overwrite: bool = False,
                    batch_size: int = 500) -> dict:
        """Post labels in batches; returns summed counts and every item's result.

        Conflicts (HTTP 409) are reported in the results, not raised.
        """
        total = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0, "results": []}
        batch: list[dict] = []

        def flush() -> None:
            r = self._call("POST", f"/v1/projects/{project}/labels", ok=(200, 409),
                           json={"labels": batch, "overwrite": overwrite}).json()
            for k in ("accepted", "duplicate", "conflict", "rejected"):
                total[k] += r[k]
            total["results"] += r["results"]
            batch.clear()

        for item in labels:
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return total

    def frame(self, project: str, frame_id: str) -> dict:
        return self._call("GET", f"/v1/projects/{project}/frames/{frame_id}").json()
