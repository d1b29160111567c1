"""A real Ray Serve app on a free loopback port, shared by a test module."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import httpx
import pytest

from alray.service.catalog import ConsistentStore
from tests.s3server import free_port

TOKEN = "test-token-alpha"
OTHER_TOKEN = "test-token-beta"



class Served:
    """A running service: its URL, root folder and an authenticated client."""

    def __init__(self, url: str, root: Path):
        self.url, self.root = url, root
        self.http = httpx.Client(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    def wait_job(self, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")


#: Scoped tokens (ALRAY_API_TOKENS=label:...,read:...) besides the two unscoped (admin) ones.
LABEL_TOKEN = "test-token-label"
READ_TOKEN = "test-token-read"
#: ALRAY_METRICS_TOKEN of the test services (/metrics with per-project series).
METRICS_TOKEN = "test-token-metrics"


def data_roots(root: Path) -> str:
    """ALRAY_DATA_ROOTS of the test services: the repo's data folder and the session's temp
    folder (where test pools live), never the whole machine."""
    from tests.conftest import MNIST

    return f"{MNIST.parent},{root.parent}"


def store_of(served: Served, project: str) -> ConsistentStore:
    """A project's store (the API shows no absolute server paths: service root + name)."""
    return ConsistentStore(str(served.root / "projects" / project))


def start_service(root: Path, port: int, **settings) -> str:
    """Deploy the app on 127.0.0.1:port and wait for /readyz (a running Serve keeps its
    port). ``settings``: more ServiceSettings fields."""
    from ray import serve

    from alray.service.app import build_app

    os.environ["ALRAY_API_TOKENS"] = (f"{TOKEN}, {OTHER_TOKEN}, label:{LABEL_TOKEN}, "
                                      f"read:{READ_TOKEN}")
    url = f"http://127.0.0.1:{port}"
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"service_root": str(root), "data_roots": data_roots(root),
                             "bind_url": url, "metrics_token": METRICS_TOKEN, **settings}),
                  name="alray", route_prefix="/", blocking=False)
    finally:
        del os.environ["ALRAY_API_TOKENS"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("service did not become ready")


def stop_service(root: Path, kill_runner: bool = True, shutdown: bool = True) -> None:
    """Delete the app (and shut Serve down); optionally kill the detached job runner and label
    writer too, as in a crash of the whole service."""
    import ray
    from ray import serve

    from alray.service.jobs import runner_name
    from alray.service.writer import writer_name

    if kill_runner:  # first: the job must die mid-work, not finish while Serve winds down
        for name in (runner_name(str(root)), writer_name(str(root))):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace="alray"), no_restart=True)
    if shutdown:
        serve.shutdown()
    else:
        serve.delete("alray")


@pytest.fixture(scope="session")
def served(ray_session, tmp_path_factory) -> Served:
    """One service for the whole tests/service run (Serve's HTTP port is cluster-wide)."""
    root = tmp_path_factory.mktemp("service")
    url = start_service(root, free_port())
    s = Served(url, root)
    yield s
    s.http.close()
    stop_service(root)


@pytest.fixture(scope="session")
def seeded(served: Served, tmp_path_factory) -> dict:
    """A project ingested (400 frames) with round 0 awaiting its 20 labels."""
    http = served.http
    cfg = project_config(tmp_path_factory.mktemp("api"), "api", **{"pool.limit": 400})
    assert http.post("/v1/projects", json=cfg).status_code == 201
    assert served.wait_job(http.post("/v1/projects/api/ingest").json()["job_id"])[
        "state"] == "succeeded"
    job = http.post("/v1/projects/api/rounds", json={}).json()["job"]
    assert served.wait_job(job["job_id"])["state"] == "succeeded"
    sel = http.get("/v1/projects/api/rounds/0/selection", params={"format": "jsonl",
                                                                  "limit": 100})
    ids = [httpx.Response(200, content=x).json()["frame_id"] for x in sel.text.splitlines()]
    store = store_of(served, "api")
    return {"ids": ids, "store": store,
            "unselected": store.read_frames([], "split = 'pool' AND status = 'unlabeled'")[
                "frame_id"].to_pylist()[:3],
            "test": store.read_frames([], "split = 'test'")["frame_id"].to_pylist()[0]}


def project_config(tmp_path, name: str, **over) -> dict:
    """A small, fast project config (random strategy, local training) as JSON."""
    from tests.conftest import small_config

    cfg = small_config(tmp_path, **{"train.backend": "local", "acquisition.strategy": "random",
                                    "pool.limit": 600, **over})
    return cfg.with_overrides(name=name).model_dump(mode="json")
