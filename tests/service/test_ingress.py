"""The HTTP ingress: the service runs behind Ray Serve's HAProxy, like `alray serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import psutil
import pytest

from alray.service.ingress import INGRESS_ENV, ingress_env
from tests.service.conftest import Served


def test_ingress_env_per_kind(tmp_path):
    env = ingress_env("haproxy", tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(tmp_path / "haproxy.cfg")
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] != "8404"  # free ports, not Ray's fixed ones
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
            "d.mkdir(parents=True)\n"
            "(d / 'haproxy.cfg').write_text('global')  # what Ray's proxy writes there\n"
            "print(d)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_HAPROXY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out.startswith(tempfile.gettempdir()) and "alray-haproxy-" in out
    assert not os.path.exists(out)
