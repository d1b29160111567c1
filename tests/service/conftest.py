"""A real Ray Serve app on a free loopback port, shared by a test module."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

TOKEN = "test-token-alpha"
OTHER_TOKEN = "test-token-beta"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_service(root: Path, port: int) -> str:
    """Deploy the app on 127.0.0.1:port and wait for /readyz (a running Serve keeps its
    port)."""
    from ray import serve

    from alray.service.app import build_app

    os.environ["ALRAY_API_TOKENS"] = f"{TOKEN}, {OTHER_TOKEN}"
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"service_root": str(root)}), name="alray", route_prefix="/",
                  blocking=False)
    finally:
        del os.environ["ALRAY_API_TOKENS"]
    url = f"http://127.0.0.1:{port}"
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
    """Delete the app (and shut Serve down); optionally kill the detached job runner too, as
    in a crash of the whole service."""
    import ray
    from ray import serve

    from alray.service.jobs import runner_name

    if shutdown:
        serve.shutdown()
    else:
        serve.delete("alray")
    if kill_runner:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(runner_name(str(root)), namespace="alray"))


@pytest.fixture(scope="session")
def served(ray_session, tmp_path_factory) -> Served:
    """One service for the whole tests/service run (Serve's HTTP port is cluster-wide)."""
    root = tmp_path_factory.mktemp("service")
    url = start_service(root, free_port())
    s = Served(url, root)
    yield s
    s.http.close()
    stop_service(root)
