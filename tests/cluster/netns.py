"""Hosts made from Linux network namespaces: one bridge, one veth pair per host, a private /24.

Every name carries a per-run id (``alray-<run>-<host>`` namespaces, ``al<run>…`` links), the
subnet is a 10.x.y.0/24 that no route or address of this machine overlaps, and the root
namespace gets ``.1`` on the bridge so the test process can reach every host. A record of each
run sits in ``/tmp/alray-netns/<run>`` with the owning pid: :func:`sweep_stale` removes what a
killed run left behind. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Host", "NetnsError", "Network", "sweep_stale"]

STATE = Path("/tmp/alray-netns")


class NetnsError(RuntimeError):
    """A namespace, link or address could not be set up (not root, no iproute2, ...)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; raise :class:`NetnsError` with its stderr when it fails."""
    try:
        res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetnsError("`ip` (iproute2) is not installed: apt-get install iproute2") from None
    if check and res.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res


def _used_networks(but: str | None = None) -> list[ipaddress.IPv4Network]:
    """Networks of the root namespace's addresses and routes (not those of device ``but``)."""
    nets = []
    for addr in json.loads(ip("-j", "-4", "addr", "show").stdout or "[]"):
        if addr.get("ifname") == but:
            continue
        for a in addr.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if route.get("dev") == but:
            continue
        if dst and dst != "default" and dst[0].isdigit():
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps no address or route of the root namespace."""
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{secrets.randbelow(54) + 200}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free 10.x.y.0/24 subnet found")


def _pids(netns: str) -> list[int]:
    res = ip("netns", "pids", netns, check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def kill_netns_processes(netns: str, timeout: float = 10) -> int:
    """SIGKILL every process whose network namespace is ``netns``; wait until they are gone.
    Never this process. Returns how many were killed."""
    pids = [p for p in _pids(netns) if p != os.getpid()]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and [p for p in _pids(netns) if p != os.getpid()]:
        time.sleep(0.1)
    return len(pids)


@dataclass
class Host:
    """One namespace: its name, address and the two ends of its veth pair."""

    name: str
    netns: str
    ip: str
    veth: str  # the root-side end, on the bridge
    dev: str = "eth0"  # the namespace-side end, renamed

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def pids(self) -> list[int]:
        return _pids(self.netns)

    def kill_all(self) -> int:
        """``kill -9`` every process of this host (a host crash)."""
        return kill_netns_processes(self.netns)

    def link(self, up: bool) -> None:
        """Cut (``up=False``) or restore this host's network."""
        ip("-n", self.netns, "link", "set", self.dev, "up" if up else "down")


@dataclass
class Network:
    """A bridge in the root namespace and hosts attached to it (see the module docstring)."""

    run: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: ipaddress.IPv4Network | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    _links: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"al{self.run}br"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (how the test process reaches hosts)."""
        return str(self.subnet.network_address + 1)

    def _record(self) -> None:
        d = STATE / self.run
        d.mkdir(parents=True, exist_ok=True)
        (d / "owner").write_text(json.dumps({
            "pid": os.getpid(), "bridge": self.bridge, "links": self._links,
            "netns": [h.netns for h in self.hosts.values()], "markers": self.markers}))

    def track(self, marker: str) -> None:
        """Also sweep, after a killed run, root-namespace processes whose command line holds
        ``marker`` (e.g. a driver host's temp folder)."""
        self.markers.append(marker)
        self._record()

    def create(self) -> Network:
        """Create the bridge with the root namespace's address on it.

        Raises:
            NetnsError: not root, no iproute2, or the kernel refuses (the message says which).
        """
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root (the cluster tests run as root in CI)")
        sweep_stale()
        self.subnet = self.subnet or _pick_subnet()
        self._record()
        ip("link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        self._record()
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        # Another run may have picked the same subnet between our check and our `addr add`.
        clash = [n for n in _used_networks(but=self.bridge) if n.overlaps(self.subnet)]
        if clash:
            raise NetnsError(f"subnet {self.subnet} is also used elsewhere: {clash}")
        return self

    def add_host(self, name: str) -> Host:
        """A new namespace ``alray-<run>-<name>`` with ``lo`` up and ``eth0`` on the bridge."""
        idx = len(self.hosts) + 2
        host = Host(name=name, netns=f"alray-{self.run}-{name}",
                    ip=str(self.subnet.network_address + idx), veth=f"al{self.run}v{idx}")
        peer = f"al{self.run}p{idx}"
        ip("netns", "add", host.netns)
        self.hosts[name] = host
        self._record()
        ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        self._links.append(host.veth)
        self._record()
        ip("link", "set", peer, "netns", host.netns)
        ip("link", "set", host.veth, "master", self.bridge)
        ip("link", "set", host.veth, "up")
        ip("-n", host.netns, "link", "set", "lo", "up")
        ip("-n", host.netns, "link", "set", peer, "name", host.dev)
        ip("-n", host.netns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", host.dev)
        ip("-n", host.netns, "link", "set", host.dev, "up")
        return host

    def destroy(self) -> list[str]:
        """Kill every host's processes, delete namespaces, veths and the bridge.

        Returns the problems met (empty when all went), so a caller can fail loudly after
        trying everything.
        """
        problems = _teardown([h.netns for h in self.hosts.values()], self._links)
        if not problems:
            (STATE / self.run / "owner").unlink(missing_ok=True)
            (STATE / self.run).rmdir()
        return problems


def _teardown(netns: list[str], links: list[str]) -> list[str]:
    problems = []
    existing = set(ip("netns", "list", check=False).stdout.split())
    for ns in netns:
        if ns not in existing:
            continue
        kill_netns_processes(ns)
        left = [p for p in _pids(ns) if p != os.getpid()]
        if left:
            problems.append(f"{ns}: processes {left} survived SIGKILL")
        res = ip("netns", "del", ns, check=False)
        if res.returncode != 0:
            problems.append(f"ip netns del {ns}: {res.stderr.strip()}")
    for link in reversed(links):  # veths vanish with their namespace; the bridge goes last
        if ip("link", "show", link, check=False).returncode == 0:
            res = ip("link", "del", link, check=False)
            if res.returncode != 0 and "Cannot find device" not in res.stderr:  # gone meanwhile
                problems.append(f"ip link del {link}: {res.stderr.strip()}")
    return problems


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose command line contains ``marker`` (never this one)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if marker.encode() in (d / "cmdline").read_bytes():
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def sweep_stale() -> list[str]:
    """Remove the namespaces and links of earlier runs whose owning process is dead."""
    problems = []
    if not STATE.is_dir():
        return problems
    for d in STATE.iterdir():
        try:
            rec = json.loads((d / "owner").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(rec["pid"], 0)
            continue  # still running (another session's cluster)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        for marker in rec.get("markers", []):
            _kill_marked(marker)
        problems += _teardown(rec.get("netns", []), rec.get("links", []))
        if not problems:
            (d / "owner").unlink(missing_ok=True)
            d.rmdir()
    return problems
