"""The namespace harness itself: hosts reach each other over the bridge, a cut link isolates a
host, and teardown (normal, or the sweep after a killed run) leaves nothing behind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.cluster.netns import STATE, Network, ip, sweep_stale

pytestmark = pytest.mark.cluster

SERVE = "import socket,sys;s=socket.create_server((sys.argv[1],8080));s.accept()[0].send(b'hi')"


def _leftovers(net: Network) -> list[str]:
    names = ip("netns", "list").stdout
    links = ip("link", "show").stdout
    return ([h.netns for h in net.hosts.values() if h.netns in names]
            + [x for x in [net.bridge, *(h.veth for h in net.hosts.values())] if x in links])


def _hello(ip_: str, timeout: float = 3) -> bytes:
    with socket.create_connection((ip_, 8080), timeout=timeout) as c:
        return c.recv(2)


def test_hosts_talk_over_the_bridge_and_teardown_is_clean():
    net = Network().create()
    try:
        a = net.add_host("a")
        srv = subprocess.Popen([*a.exec_prefix(), sys.executable, "-c", SERVE, a.ip])
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _hello(a.ip) == b"hi"  # root namespace -> host a over the bridge
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        srv.wait(5)
        assert ip("-n", a.netns, "addr", "show", "lo").stdout.count("UP") >= 1
        a.link(up=False)  # a partition: the host's only interface goes down
        srv = subprocess.Popen([*a.exec_prefix(), sys.executable, "-c", SERVE, a.ip])
        time.sleep(1.0)
        with pytest.raises(OSError):
            _hello(a.ip, timeout=1)
        a.link(up=True)
        assert a.pids() == [srv.pid]
    finally:
        problems = net.destroy()
    assert problems == [] and _leftovers(net) == []
    assert srv.wait(5) == -9  # killed by the teardown
    assert not (STATE / net.run).exists()


def test_sweep_removes_what_a_killed_run_left():
    net = Network().create()
    host = net.add_host("x")
    sleeper = subprocess.Popen([*host.exec_prefix(), "sleep", "600"])
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                               f"/tmp/alray-marker-{net.run}"])
    net.track(f"/tmp/alray-marker-{net.run}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    rec = STATE / net.run / "owner"
    rec.write_text(json.dumps({**json.loads(rec.read_text()), "pid": dead.pid}))  # owner gone
    assert sweep_stale() == []
    assert _leftovers(net) == [] and not (STATE / net.run).exists()
    assert sleeper.wait(5) == -9 and marked.wait(5) == -9
