"""Two `alray serve` processes on one host, each with its own Ray: no shared port, no
cross-talk, not even while one of them is starting (issue #13, finding 6)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import MNIST, small_config
from tests.s3server import free_port

#: Ray Serve's fixed fallback-proxy port, which two services used to share.
RAY_FALLBACK_PORT = 8500


class Service:
    """One `alray serve` subprocess: its port, token, project, temp dir and log."""

    def __init__(self, name: str, token: str, tmp: Path):
        self.name, self.token, self.port = name, token, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = small_config(tmp / name, **{"ray.num_cpus": 2}).with_overrides(name=name)
        self.config = tmp / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("RAY_", "SERVE_", "ALRAY_"))}  # not the session's
        self.env.update({"ALRAY_API_TOKENS": token,
                         "ALRAY_SERVICE_ROOT": str(tmp / name / "root"),
                         "ALRAY_DATA_ROOTS": f"{MNIST.parent},{tmp}", "ALRAY_PROGRESS": "0"})
        self.log_path = tmp / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.children: dict[int, psutil.Process] = {}
        self.launches = 0
        self.launch()

    def launch(self) -> None:
        """Start `alray serve` with its own temp dir (its Ray's and HAProxy's files)."""
        self.launches += 1
        self.tmp = Path(tempfile.mkdtemp(prefix=f"a2s-{self.name[-1]}-"))  # short: sockets
        self.env["TMPDIR"] = str(self.tmp)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "alray"), "serve", str(self.config),
             "--port", str(self.port)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        """Fail if `alray serve` exited; relaunch it (twice at most) when only its Ray failed
        to start: on a loaded 2-core host a raylet can miss Ray's fixed 30 s registration
        deadline, which is not what this test is about."""
        if self.proc.poll() is None:
            return
        log = self.log_path.read_text(errors="replace")
        if "timed out during startup" in log.rsplit("alray-serve-launch", 1)[-1] and (
                self.launches < 3):
            self.end_children()
            self.log.write(b"\nalray-serve-launch: Ray did not start in time, again\n")
            self.log.flush()
            self.launch()
            return
        raise AssertionError(f"{self.name} exited:\n{log[-3000:]}")

    def get(self, token: str) -> httpx.Response | None:
        """GET this service's project with ``token``; None when nothing answers yet."""
        self.remember_children()
        try:
            return httpx.get(f"{self.url}/v1/projects/{self.name}", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def remember_children(self) -> None:
        """Note the processes this service started (Ray, HAProxy), to end them by pid."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.children.setdefault(p.pid, p)

    def haproxy_config(self) -> str:
        found = sorted(Path("/tmp").glob(f"alray-haproxy-{self.proc.pid}/*/haproxy.cfg"))
        return found[0].read_text() if found else ""

    def stop(self) -> None:
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `alray serve` shuts Serve and Ray down
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.end_children()
        self.log.close()

    def end_children(self) -> None:
        """Kill what a launch started and left behind, and remove its temp dir."""
        for p in self.children.values():  # psutil checks that the pid was not reused
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.children.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(f"/tmp/alray-haproxy-{self.proc.pid}", ignore_errors=True)  # if killed


def _answered_by_app(r: httpx.Response | None) -> bool:
    """True for the app's own answers (JSON), not HAProxy's or Serve's start-up replies."""
    return r is not None and r.headers.get("content-type", "").startswith("application/json")


@pytest.mark.timeout(600)
def test_two_services_on_one_host_never_cross_talk(tmp_path):
    a = Service("svc-a", "token-of-a", tmp_path)
    b = Service("svc-b", "token-of-b", tmp_path)
    services = [(a, b), (b, a)]
    try:
        seen: list[tuple[str, str, int]] = []
        deadline = time.monotonic() + 480  # `alray serve` imports torch: slow when loaded
        while not (a.ready() and b.ready()):  # both start at once; probe while they do
            for me, other in services:
                me.check_alive()
                own, foreign = me.get(me.token), me.get(other.token)
                if _answered_by_app(own):
                    seen.append((me.name, "own", own.status_code))
                if _answered_by_app(foreign):
                    seen.append((me.name, "foreign", foreign.status_code))
            assert time.monotonic() < deadline, "services did not become ready"
            time.sleep(0.1)
        for _ in range(10):
            for me, other in services:
                seen.append((me.name, "own", me.get(me.token).status_code))
                seen.append((me.name, "foreign", me.get(other.token).status_code))
        # Each service answers its own token, and refuses the other's: never the reverse.
        wrong = [s for s in seen if s[2] != (200 if s[1] == "own" else 403)]
        assert not wrong, wrong[:5]
        assert {(s[0], s[1]) for s in seen} == {(n, k) for n in ("svc-a", "svc-b")
                                                for k in ("own", "foreign")}
        # Each has its own fallback proxy port (not Ray's fixed 8500), and its HAProxy
        # refuses oversized bodies.
        ports = {}
        for me, _ in services:
            deadline = time.monotonic() + 60
            while not re.search(r" backup\n", me.haproxy_config()):
                assert time.monotonic() < deadline, me.haproxy_config()
                time.sleep(0.5)
            cfg = me.haproxy_config()
            ports[me.name] = set(re.findall(r":(\d+) check backup\n", cfg))
            assert "req.hdr_val(content-length) gt 8388608" in cfg
        assert ports["svc-a"] and ports["svc-b"] and not ports["svc-a"] & ports["svc-b"], ports
        assert str(RAY_FALLBACK_PORT) not in ports["svc-a"] | ports["svc-b"], ports
    finally:
        for me, _ in services:
            me.stop()
