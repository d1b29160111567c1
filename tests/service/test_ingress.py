"""The HTTP ingress: the service runs behind Ray Serve's HAProxy, like `alray serve`."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile

import psutil
import pytest

from alray.service.ingress import INGRESS_ENV, ingress_env
from alray.service.settings import ServiceSettings
from tests.service.conftest import Served


def test_ingress_env_per_kind(tmp_path):
    env = ingress_env("haproxy", tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(tmp_path / "haproxy.cfg")
    ports = [env[f"RAY_SERVE_{k}_PORT"] for k in ("HAPROXY_STATS", "HAPROXY_METRICS",
                                                  "FALLBACK_PROXY_HTTP", "FALLBACK_PROXY_GRPC")]
    assert not {"8404", "9101", "8500", "9500"} & set(ports)  # free ports, not Ray's fixed ones
    assert len(set(ports)) == 4
    assert env["SERVE_SOCKET_REUSE_PORT_ENABLED"] == "0"  # a clash fails, never shares a port
    assert ingress_env("proxy") == INGRESS_ENV["proxy"]
    with pytest.raises(ValueError, match="ingress: 'nginx'"):
        ingress_env("nginx")  # type: ignore[arg-type]


def test_service_is_served_through_haproxy(served: Served):
    state = os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]  # set by the Ray session fixture
    procs = [p for p in psutil.process_iter(["name", "cmdline"])
             if p.info["name"] == "haproxy" and f"-f {state}/" in " ".join(p.info["cmdline"] or [])]
    assert procs, f"no haproxy process runs with a config under {state}"
    assert served.http.get("/readyz").status_code == 200
    assert served.http.get("/v1/projects/nope").status_code == 404


def test_default_haproxy_folder_is_removed_at_exit(tmp_path):
    code = ("import os, pathlib\n"
            "from alray.service.ingress import use_ingress\n"
            "d = pathlib.Path(use_ingress('haproxy')['RAY_SERVE_HAPROXY_SERVER_STATE_BASE'])\n"
            "d.mkdir(parents=True, exist_ok=True)  # the launcher may be there already\n"
            "(d / 'haproxy.cfg').write_text('global')  # what Ray's proxy writes there\n"
            "print(d)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_HAPROXY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out.startswith(tempfile.gettempdir()) and "alray-haproxy-" in out
    assert not os.path.exists(out)


def _raw_post(url: str, length: int) -> tuple[int, bytes]:
    """Send only the head of a POST announcing ``length`` body bytes; the status and body of
    the answer (which must come before any of the body is sent)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", "/v1/projects/api/labels")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()  # the head only: no body byte is sent
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_haproxy_refuses_bodies_over_the_limit(served: Served):
    """HAProxy answers 413 to an oversized Content-Length itself: no replica sees it (the app
    would answer 401 first, since the request carries no token)."""
    limit = ServiceSettings().max_body_bytes
    status, body = _raw_post(served.url, limit + 1)
    assert status == 413 and b"refused by the ingress" in body, body
    assert b'"error": "too_large"' in body
    status, body = _raw_post(served.url, limit)  # at the limit: the app's turn (no token)
    assert status == 401, body
