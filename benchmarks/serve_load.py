"""Load benchmark of ``alray serve``: concurrent clients page selections and post labels.

Starts a local Ray (2 CPUs), deploys the alray app and, in the same Serve instance, a bare
FastAPI endpoint of the same shape (a static page, a JSON echo), then runs the same paced
client load against both. Prints one JSON line per (target, operation) with p50/p99 latency,
throughput and errors, then one line per operation with the overhead ratio alray / bare.

Each of the ``--clients`` clients is an annotation tool: every ``--page-interval`` seconds
it fetches a selection page (``--page`` frames, Label Studio format, a random cursor), and
every ``--label-interval`` seconds it posts a batch of ``--batch`` labels for its own frames
(``overwrite`` with a new label each time, so every batch writes).

Usage::

    .venv/bin/python benchmarks/serve_load.py --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from fastapi import FastAPI

from alray.service.ingress import INGRESS_ENV

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("serve_load")
_BATCHES: collections.Counter = collections.Counter()  # label batches posted, per client


def _cpu_by_role() -> dict[str, float]:
    """CPU seconds so far of this process and its descendants (Ray's), by role."""
    import psutil

    me = psutil.Process()
    out: collections.Counter = collections.Counter()
    for p in [me, *me.children(recursive=True)]:
        try:
            t, title = p.cpu_times(), " ".join(p.cmdline())
        except psutil.Error:  # exited while listing
            continue
        role = ("clients" if p.pid == me.pid else "haproxy" if p.name() == "haproxy" else
                next((r for r in ("ProxyActor", "LabelWriter", "JobRunner", "ServeController")
                      if r in title), None)
                or ("replica_" + title.split("ServeReplica:")[1].split(":")[0]
                    if "ServeReplica:" in title else None)
                or next((r for r in ("raylet", "gcs_server") if r in title), "ray_other"))
        out[role] += t.user + t.system
    return dict(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _bare_app(page: dict):
    """A bare Ray Serve FastAPI deployment: a static page and a label echo."""
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
    @serve.ingress(api)
    class Bare:
        @api.get("/page")
        def get_page(self) -> dict:
            return page

        @api.post("/labels")
        def post_labels(self, body: dict) -> dict:
            return {"accepted": len(body["labels"]), "results": [
                {"frame_id": x["frame_id"], "status": "accepted"} for x in body["labels"]]}

    return Bare.bind()


async def _client(i: int, http: aiohttp.ClientSession, paths: dict, frames: list[str],
                  cursors: list[str | None], args, stop_at: float, out: dict) -> None:
    rng = random.Random(i)
    await asyncio.gather(_pager(rng, http, paths, cursors, args, stop_at, out),
                         _labeler(i, rng, http, paths, frames, args, stop_at, out))


async def _pager(rng, http, paths, cursors, args, stop_at: float, out: dict) -> None:
    await asyncio.sleep(rng.random() * args.page_interval)  # spread the clients' phases
    while time.perf_counter() < stop_at:
        t_next = time.perf_counter() + args.page_interval
        cursor = rng.choice(cursors)
        params = {"format": "label-studio", "limit": args.page, **(
            {"cursor": cursor} if cursor else {})}
        await _timed(http.get(paths["page"], params=params), "selection_page", out)
        await asyncio.sleep(max(0.0, min(t_next, stop_at) - time.perf_counter()))


async def _labeler(i: int, rng, http, paths, frames, args, stop_at: float, out: dict) -> None:
    await asyncio.sleep(rng.random() * args.label_interval)
    while time.perf_counter() < stop_at:
        n = _BATCHES[i]  # a client's batches differ from its previous one in every label
        t_next = time.perf_counter() + args.label_interval
        body = {"overwrite": True, "labels": [
            {"frame_id": f, "label": (n + k) % 10, "idempotency_key": f"c{i}:{n}:{f}"}
            for k, f in enumerate(frames)]}
        await _timed(http.post(paths["labels"], json=body), "label_batch", out)
        _BATCHES[i] += 1
        await asyncio.sleep(max(0.0, min(t_next, stop_at) - time.perf_counter()))


async def _timed(request, op: str, out: dict) -> None:
    t0 = time.perf_counter()
    try:
        async with request as r:
            await r.read()  # the whole body, like a client that uses it
            ok = r.status == 200
    except (TimeoutError, aiohttp.ClientError):
        ok = False
    out[op]["lat"].append(time.perf_counter() - t0)
    out[op]["start"].append(t0)
    out[op]["errors"] += not ok


async def _run_load(url: str, token: str, paths: dict, frames: list[str],
                    cursors: list[str | None], args) -> tuple[dict, float]:
    out = {op: {"lat": [], "start": [], "errors": 0} for op in ("selection_page", "label_batch")}
    per = args.batch
    clients = [aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=30),
                                     headers={"Authorization": f"Bearer {token}"},
                                     connector=aiohttp.TCPConnector(limit=2))
               for _ in range(args.clients)]
    t0 = time.perf_counter()
    stop_at = t0 + args.seconds
    await asyncio.gather(*(
        _client(i, c, paths, frames[i * per:(i + 1) * per], cursors, args, stop_at, out)
        for i, c in enumerate(clients)))
    wall = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return out, wall


def _setup(client, args) -> tuple[list[str], list[str | None]]:
    from alray.config import ProjectConfig

    n_sel = args.clients * args.batch
    cfg = ProjectConfig().with_overrides(**{
        "name": "load", "pool.uri": str(ROOT / "data" / "mnist-t10k"),
        "pool.limit": args.pool, "pool.val_fraction": 0.05, "pool.test_fraction": 0.2,
        "train.backend": "local", "loop.initial_labels": n_sel})
    client.create_project(cfg.model_dump(mode="json"))
    job = client.wait(client.ingest("load")["job_id"], poll=0.5)
    assert job["state"] == "succeeded", job
    job = client.wait(client.start_round("load")["job"]["job_id"], poll=0.5)
    assert job["state"] == "succeeded", job
    frames = [x["frame_id"] for x in client.selection("load", 0, limit=1000)]
    if len(frames) < n_sel:
        raise SystemExit(f"only {len(frames)} frames selected; raise --pool")
    cursors, cursor = [None], None
    for page in client.selection_pages("load", 0, format="label-studio", limit=args.page):
        cursor = page["next_cursor"]
        if cursor:
            cursors.append(cursor)
    return frames, cursors


def _report(target: str, out: dict, wall: float, args, sha: str) -> dict:
    rows = {}
    for op, d in out.items():
        lat = np.asarray(d["lat"]) * 1000
        row = {"bench": "serve_load", "target": target, "op": op, "clients": args.clients,
               "batch": args.batch if op == "label_batch" else args.page,
               "interval_s": args.label_interval if op == "label_batch" else args.page_interval,
               "requests": int(lat.size), "errors": d["errors"],
               "p50_ms": round(float(np.percentile(lat, 50)), 2),
               "p99_ms": round(float(np.percentile(lat, 99)), 2),
               "throughput_rps": round(lat.size / wall, 1), "seconds": round(wall, 1),
               "device": "cpu", "cpus": os.cpu_count(),
               "loadavg_1m": round(os.getloadavg()[0], 1), "ingress": args.ingress,
               "git_sha": sha}
        print(json.dumps(row), flush=True)
        rows[op] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0, help="load duration per target")
    p.add_argument("--slices", type=int, default=4, help="alternating slices per target")
    p.add_argument("--page-interval", type=float, default=1.0,
                   help="seconds between a client's selection pages")
    p.add_argument("--label-interval", type=float, default=5.0,
                   help="seconds between a client's label batches")
    p.add_argument("--batch", type=int, default=100, help="labels per batch")
    p.add_argument("--page", type=int, default=100, help="frames per selection page")
    p.add_argument("--pool", type=int, default=7000, help="frames ingested (75%% land in "
                   "the pool; clients x batch of them are selected)")
    p.add_argument("--dump-latencies", metavar="TSV",
                   help="append target, op, start time and latency (ms) of every request")
    p.add_argument("--ingress", choices=sorted(INGRESS_ENV), default="haproxy",
                   help="Ray Serve HTTP ingress (as `alray serve --ingress`)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))

    import ray
    from ray import serve

    from alray.client import Client
    from alray.config import RayConfig
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.service.app import build_app
    from alray.service.ingress import use_ingress

    token = secrets.token_urlsafe(24)
    os.environ["ALRAY_API_TOKENS"] = token
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    root = tempfile.mkdtemp(prefix="alray-load-")
    use_ingress(args.ingress)
    ensure_ray(RayConfig(num_cpus=2))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"service_root": root, "data_roots": str(ROOT / "data"),
                         "bind_url": url}), name="alray", route_prefix="/")
    sha = _git_sha()
    try:
        with Client(url, token, timeout=120) as client:
            t0 = time.perf_counter()
            frames, cursors = _setup(client, args)
            log.info("setup: %d selected frames in %.1fs", len(frames), time.perf_counter() - t0)
            sample = client.selection_pages("load", 0, format="label-studio", limit=args.page)
            serve.run(_bare_app(next(sample)), name="bare", route_prefix="/bare")
        targets = {
            "bare": {"page": "/bare/page", "labels": "/bare/labels"},
            "alray": {"page": "/v1/projects/load/rounds/0/selection",
                      "labels": "/v1/projects/load/labels"},
        }
        # Alternate short slices of both targets, so both see the same machine (a shared
        # 2-core box is noisy); the figures are over all slices of a target.
        merged = {t: ({op: {"lat": [], "errors": 0} for op in ("selection_page",
                                                                "label_batch")}, 0.0)
                  for t in targets}
        slice_args = argparse.Namespace(**{**vars(args), "seconds": args.seconds / args.slices})
        cpu: dict[str, collections.Counter] = {t: collections.Counter() for t in targets}
        for _ in range(args.slices):
            for target, paths in targets.items():
                before = _cpu_by_role()
                out, wall = asyncio.run(_run_load(url, token, paths, frames, cursors,
                                                  slice_args))
                after = _cpu_by_role()
                cpu[target].update({k: v - before.get(k, 0.0) for k, v in after.items()})
                acc, secs = merged[target]
                for op, d in out.items():
                    if args.dump_latencies:
                        with open(args.dump_latencies, "a") as f:
                            for t, lat in zip(d["start"], d["lat"], strict=True):
                                f.write(f"{target}\t{op}\t{t:.3f}\t{lat * 1000:.1f}\n")
                    acc[op]["lat"] += d["lat"]
                    acc[op]["errors"] += d["errors"]
                merged[target] = (acc, secs + wall)
        results = {t: _report(t, acc, secs, args, sha) for t, (acc, secs) in merged.items()}
        for t, (_, secs) in merged.items():  # where the 2 cores went, per target
            print(json.dumps({"bench": "serve_load", "target": t, "cpu_seconds": {
                k: round(v, 1) for k, v in cpu[t].most_common()},
                "cpu_capacity_seconds": round(secs * (os.cpu_count() or 1), 1),
                "git_sha": sha}), flush=True)
        for op in ("selection_page", "label_batch"):
            a, b = results["alray"][op], results["bare"][op]
            print(json.dumps({"bench": "serve_load", "op": op, "clients": args.clients,
                              "overhead_p50": round(a["p50_ms"] / b["p50_ms"], 2),
                              "overhead_p99": round(a["p99_ms"] / b["p99_ms"], 2),
                              "git_sha": sha}), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
