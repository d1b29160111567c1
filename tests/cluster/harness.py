"""A real multi-host Ray cluster on one machine: S3, a Ray head and worker hosts, each in its own
network namespace (see :mod:`tests.cluster.netns`), and a driver host in the root namespace.

Layout (``Cluster.start``)::

    root ns  (bridge .1)  driver host: `ray start --address=head --num-cpus=0`; the test process
    s3       (.2)         SeaweedFS (tests/s3server.py), SigV4 enforced
    head     (.3)         `ray start --head --num-cpus=0` (GCS; no work scheduled here)
    w1, w2   (.4, .5)     `ray start --address=head --num-cpus=2`; w2 also has {"gpu_host": 1}

Every Ray process gets the S3 endpoint and credentials in its environment (as a Kubernetes pod
gets them from a Secret). :meth:`Cluster.stop` kills every process (by namespace, and the driver
host's process tree), then removes namespaces, veths and the bridge; it raises if anything
survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.netns import Host, Network
from tests.s3server import S3Server, free_port, start_s3_server

__all__ = ["Cluster", "RayNode"]

GCS_PORT = 6379
DASHBOARD_PORT = 8265
RAY = str(Path(sys.executable).parent / "ray")
ROOT = Path(__file__).resolve().parents[2]
#: Faster dead-node detection than Ray's defaults (3 s period, 5 misses of 10 s timeouts), yet
#: tolerant of a loaded 2-core machine; raylets get longer than 10 s to register.
RAY_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "3000",
           "RAY_health_check_failure_threshold": "8", "RAY_raylet_start_wait_time_s": "120"}


@dataclass
class RayNode:
    """One ``ray start --block`` process (a Ray host) and where it lives."""

    name: str
    ip: str
    args: list[str]
    temp_dir: str
    host: Host | None = None  # None: the driver host, in the root namespace
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return Path(self.temp_dir).parent / f"{self.name}.log"

    def wait_started(self, timeout: float = 600, attempts: int = 3) -> None:
        """Wait for ``ray start`` to report its node up (registered with the GCS).

        ``ray start`` gives its raylet a fixed 30 s to register and then exits; on a loaded
        2-core machine that happens, so such a start is retried (``attempts`` in all).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"Ray runtime started" in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                out = self.log.read_text()
                if attempts > 1 and "timed out during startup" in out:
                    self.stop()
                    self.start()
                    return self.wait_started(deadline - time.monotonic(), attempts - 1)
                raise RuntimeError(f"ray host {self.name} exited with {self.proc.returncode}: "
                                   f"{out[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray host {self.name} not up after {timeout}s: {self.log}")

    def stop(self) -> list[str]:
        """Kill every process of this host; returns the survivors' descriptions."""
        if self.host is not None:
            self.host.kill_all()
            left = [p for p in self.host.pids() if p != os.getpid()]
            return [f"{self.name}: processes {left} survived SIGKILL"] if left else []
        return _stop_tree(self.proc) if self.proc else []

    def start(self) -> None:
        self.log.unlink(missing_ok=True)
        prefix = self.host.exec_prefix() if self.host else []
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([*prefix, RAY, "start", "--block", *self.args],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(ROOT), start_new_session=True)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class Cluster:
    """S3 + Ray head + ``workers`` worker hosts (+ the driver host); see the module docstring.

    Args:
        workers: Worker hosts (``w1``, ``w2``, ...).
        cpus: Logical CPUs each worker host offers (the machine has 2 real cores: keep the
            real work small).
        object_store_mb: Object store per Ray host.
    """

    workers: int = 2
    cpus: int = 2
    object_store_mb: int = 256
    net: Network = field(default_factory=Network)
    s3: S3Server | None = None
    nodes: dict[str, RayNode] = field(default_factory=dict)
    workdir: str = ""
    node_ids: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: Per host ("head", "w1", ...): ``ray start`` resource flags replacing the defaults
    #: (``--num-cpus``, ``--resources``), and extra environment; e.g. a rendered Helm chart's.
    host_args: dict[str, list[str]] = field(default_factory=dict)
    host_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Called with the cluster once S3 is up, before any Ray host starts (to fill the above).
    configure: Callable[[Cluster], None] | None = None
    #: Start the driver host (:meth:`connect` needs it; a test using only HTTP does not).
    driver: bool = True

    # ---- addresses ---------------------------------------------------------------------
    @property
    def head_address(self) -> str:
        return f"{self.net.hosts['head'].ip}:{GCS_PORT}"

    @property
    def dashboard_address(self) -> str:
        """The head's dashboard (Ray's state API), for ``ray.util.state`` calls."""
        return f"http://{self.net.hosts['head'].ip}:{DASHBOARD_PORT}"

    @property
    def worker_names(self) -> list[str]:
        return [f"w{i + 1}" for i in range(self.workers)]

    def env(self) -> dict[str, str]:
        """What every process of the cluster, and the driver, has in its environment: the S3
        endpoint and credentials, and Ray's token auth off by name. Left unset, each Ray
        process turns it on if ``~/.ray/auth_token`` exists, a file any local ``ray.init()`` on
        the machine may create at any moment: hosts started before and after it would disagree.
        (A per-cluster token needs it in the driver's environment before Ray first loads its
        config in the process, which pytest's imports do.)"""
        return {**self.s3.env, "RAY_AUTH_MODE": "disabled"}

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> Cluster:
        t0 = time.perf_counter()
        self.workdir = tempfile.mkdtemp(prefix=f"alc{self.net.run}-")
        self.net.create()
        self.net.track(os.path.join(self.workdir, "driver"))  # the root namespace's Ray host
        for name in ["s3", "head", *self.worker_names]:
            self.net.add_host(name)
        self.timings["network_s"] = time.perf_counter() - t0
        s3 = self.net.hosts["s3"]
        self.s3 = start_s3_server("seaweedfs", host=s3.ip, netns=s3.netns, port=8333)
        self.timings["s3_s"] = time.perf_counter() - t0
        if self.configure:
            self.configure(self)
        head = self.net.hosts["head"]
        # The dashboard process serves Ray's state API (list_tasks, list_actors).
        self._add_node("head", head, ["--head", f"--port={GCS_PORT}",
                                      *self.host_args.get("head", ["--num-cpus=0"]),
                                      "--include-dashboard=true", f"--dashboard-host={head.ip}",
                                      f"--dashboard-port={DASHBOARD_PORT}"])
        self.nodes["head"].start()
        self.nodes["head"].wait_started()
        for i, name in enumerate(self.worker_names):
            res = {"gpu_host": 1} if i == 1 else {}
            self._add_node(name, self.net.hosts[name], [
                f"--address={self.head_address}", *self.host_args.get(name, [
                    f"--num-cpus={self.cpus}", f"--resources={json.dumps(res)}"])])
        names = [*self.worker_names, *(["driver"] if self.driver else [])]
        if self.driver:
            self._add_node("driver", None, [f"--address={self.head_address}", "--num-cpus=0"])
        for name in names:
            self.nodes[name].start()
        for name in names:  # slow on a loaded 2-core machine
            self.nodes[name].wait_started()
        self.timings["ray_started_s"] = time.perf_counter() - t0
        return self

    def _add_node(self, name: str, host: Host | None, args: list[str]) -> None:
        ip = host.ip if host else self.net.gateway
        temp = os.path.join(self.workdir, name)
        os.makedirs(temp, exist_ok=True)
        # Ports: any are free inside a fresh namespace; the driver host shares the root one.
        ports = {"--node-manager-port": 6380, "--object-manager-port": 6381,
                 "--metrics-export-port": 6382, "--dashboard-agent-listen-port": 6383,
                 "--dashboard-agent-grpc-port": 6384, "--runtime-env-agent-port": 6385}
        if host is None:
            ports = {k: free_port() for k in ports}
        env = {**os.environ, **self.env(), **RAY_ENV, "RAY_USAGE_STATS_ENABLED": "0",
               "ALRAY_PROGRESS": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        if host is not None:  # torch.distributed's gloo: the host's own interface, as in a pod
            env["GLOO_SOCKET_IFNAME"] = host.dev
        env.update(self.host_env.get(name, {}))
        self.nodes[name] = RayNode(
            name=name, ip=ip, temp_dir=temp, host=host, env=env, args=[
                *args, f"--node-ip-address={ip}", f"--temp-dir={temp}",
                f"--object-store-memory={self.object_store_mb << 20}",
                "--disable-usage-stats", "--include-log-monitor=false",
                *(f"{k}={v}" for k, v in ports.items())])

    def connect(self, timeout: float = 120) -> None:
        """Join the cluster from this process (through the driver host) and wait until every
        host is alive; fills :attr:`node_ids` (host name -> Ray node id)."""
        import ray

        if ray.is_initialized():
            raise RuntimeError("Ray is already initialised in this process: run the cluster "
                               "tests on their own (make test-cluster)")
        t0 = time.perf_counter()
        ray.init(address=self.head_address, _node_ip_address=self.net.gateway,
                 include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
        self.wait_alive(timeout=timeout)
        self.timings["connected_s"] = time.perf_counter() - t0

    def wait_alive(self, names: list[str] | None = None, timeout: float = 120) -> float:
        """Wait until the named hosts (default: all) are alive Ray nodes; update
        :attr:`node_ids`. Returns the seconds waited."""
        import ray

        names = names or list(self.nodes)
        by_ip = {n.ip: name for name, n in self.nodes.items()}
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            alive = {by_ip.get(n["NodeManagerAddress"]): n["NodeID"] for n in ray.nodes()
                     if n["Alive"]}
            if all(name in alive for name in names):
                self.node_ids.update({k: v for k, v in alive.items() if k in names})
                return time.monotonic() - t0
            for name in names:
                proc = self.nodes[name].proc
                if proc.poll() is not None:
                    raise RuntimeError(f"ray host {name} exited with {proc.returncode}; "
                                       f"see {self.workdir}/{name}.log")
            time.sleep(0.5)
        raise RuntimeError(f"hosts {names} not all alive after {timeout}s: {ray.nodes()}")

    def wait_dead(self, name: str, timeout: float = 120) -> float:
        """Wait until Ray marks host ``name`` dead; returns the seconds it took."""
        import ray

        t0 = time.monotonic()
        node_id = self.node_ids[name]
        while time.monotonic() - t0 < timeout:
            if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"Ray still reports host {name} alive after {timeout}s")

    def host_of(self, node_id: str) -> str | None:
        """The host name of a Ray node id (None if not one of ours)."""
        return next((k for k, v in self.node_ids.items() if v == node_id), None)

    # ---- faults ------------------------------------------------------------------------
    def kill_host(self, name: str) -> int:
        """``kill -9`` every process of worker host ``name`` (raylet, workers, agents)."""
        return self.net.hosts[name].kill_all()

    def restart_host(self, name: str) -> None:
        """Start a killed worker host again (a new Ray node on the same address)."""
        node = self.nodes[name]
        shutil.rmtree(node.temp_dir, ignore_errors=True)
        os.makedirs(node.temp_dir)
        node.start()
        node.wait_started()

    # ---- teardown ----------------------------------------------------------------------
    def stop(self) -> None:
        """Disconnect, kill every process, remove the network; raise if anything is left."""
        import ray

        problems: list[str] = []
        with contextlib.suppress(Exception):
            ray.shutdown()
        driver = self.nodes.get("driver")
        if driver:
            problems += driver.stop()
        if self.s3:
            self.s3.kill()
        problems += self.net.destroy()
        for node in self.nodes.values():
            if node.proc and node.proc.poll() is None:
                node.proc.kill()
            if node.proc:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(5)
        if self.s3:
            shutil.rmtree(self.s3.workdir, ignore_errors=True)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise RuntimeError("cluster teardown left: " + "; ".join(problems))


def _stop_tree(proc: subprocess.Popen, timeout: float = 10) -> list[str]:
    """SIGKILL a process, its process group and every descendant; report survivors."""
    pids = [proc.pid, *_descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    deadline = time.monotonic() + timeout
    left = pids
    while left and time.monotonic() < deadline:
        left = [p for p in left if _alive(p)]
        time.sleep(0.1)
    return [f"driver host processes {left} survived SIGKILL"] if left else []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
