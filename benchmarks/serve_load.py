"""Load benchmark of ``alray serve``: concurrent clients page selections and post labels.

Starts a local Ray (2 CPUs), deploys the alray app and, in the same Serve instance, a bare
FastAPI endpoint of the same shape (a static page, a JSON echo), then runs the same paced
client load against both. Prints one JSON line per (target, operation) with p50/p99 latency,
throughput and errors, then one line per operation with the overhead ratio alray / bare.

Each of the ``--clients`` clients is an annotation tool: every ``--interval`` seconds it
fetches a selection page (``--page`` frames, Label Studio format, a random cursor) and posts
a batch of ``--batch`` labels for its own frames (``overwrite``, so every batch writes).

Usage::

    .venv/bin/python benchmarks/serve_load.py --clients 50 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("serve_load")


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
    from fastapi import FastAPI, Request
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
    @serve.ingress(api)
    class Bare:
        @api.get("/page")
        def get_page(self) -> dict:
            return page

        @api.post("/labels")
        async def post_labels(self, request: Request) -> dict:
            body = await request.json()
            return {"accepted": len(body["labels"]), "results": [
                {"frame_id": x["frame_id"], "status": "accepted"} for x in body["labels"]]}

    return Bare.bind()


async def _client(i: int, http: httpx.AsyncClient, paths: dict, frames: list[str],
                  cursors: list[str | None], args, stop_at: float, out: dict) -> None:
    rng = random.Random(i)
    await asyncio.sleep(rng.random() * args.interval)  # spread the clients' phases
    n = 0
    while time.perf_counter() < stop_at:
        t_next = time.perf_counter() + args.interval
        cursor = rng.choice(cursors)
        params = {"format": "label-studio", "limit": args.page, **(
            {"cursor": cursor} if cursor else {})}
        await _timed(http.get(paths["page"], params=params), "selection_page", out)
        body = {"overwrite": True, "labels": [
            {"frame_id": f, "label": (n + k) % 10, "idempotency_key": f"c{i}:{n}:{f}"}
            for k, f in enumerate(frames)]}
        await _timed(http.post(paths["labels"], json=body), "label_batch", out)
        n += 1
        await asyncio.sleep(max(0.0, t_next - time.perf_counter()))


async def _timed(coro, op: str, out: dict) -> None:
    t0 = time.perf_counter()
    try:
        r = await coro
        ok = r.status_code == 200
    except httpx.HTTPError:
        ok = False
    out[op]["lat"].append(time.perf_counter() - t0)
    out[op]["errors"] += not ok


async def _run_load(url: str, token: str, paths: dict, frames: list[str],
                    cursors: list[str | None], args) -> tuple[dict, float]:
    out = {op: {"lat": [], "errors": 0} for op in ("selection_page", "label_batch")}
    per = args.batch
    clients = [httpx.AsyncClient(base_url=url, timeout=30, headers={
        "Authorization": f"Bearer {token}"}, limits=httpx.Limits(max_connections=2))
        for _ in range(args.clients)]
    t0 = time.perf_counter()
    stop_at = t0 + args.seconds
    await asyncio.gather(*(
        _client(i, c, paths, frames[i * per:(i + 1) * per], cursors, args, stop_at, out)
        for i, c in enumerate(clients)))
    wall = time.perf_counter() - t0
    for c in clients:
        await c.aclose()
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
               "interval_s": args.interval, "requests": int(lat.size), "errors": d["errors"],
               "p50_ms": round(float(np.percentile(lat, 50)), 2),
               "p99_ms": round(float(np.percentile(lat, 99)), 2),
               "throughput_rps": round(lat.size / wall, 1), "seconds": round(wall, 1),
               "device": "cpu", "cpus": os.cpu_count(), "git_sha": sha}
        print(json.dumps(row), flush=True)
        rows[op] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0, help="load duration per target")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between a client's "
                   "iterations (one page + one label batch each)")
    p.add_argument("--batch", type=int, default=100, help="labels per batch")
    p.add_argument("--page", type=int, default=100, help="frames per selection page")
    p.add_argument("--pool", type=int, default=10000, help="frames ingested")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.path.insert(0, str(ROOT))

    import ray
    from ray import serve

    from alray.client import Client
    from alray.config import RayConfig
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.service.app import build_app

    token = secrets.token_urlsafe(24)
    os.environ["ALRAY_API_TOKENS"] = token
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    root = tempfile.mkdtemp(prefix="alray-load-")
    ensure_ray(RayConfig(num_cpus=2))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"service_root": root}), name="alray", route_prefix="/")
    sha = _git_sha()
    try:
        with Client(url, token, timeout=120) as client:
            t0 = time.perf_counter()
            frames, cursors = _setup(client, args)
            log.info("setup: %d selected frames in %.1fs", len(frames), time.perf_counter() - t0)
            sample = client.selection_pages("load", 0, format="label-studio", limit=args.page)
            serve.run(_bare_app(next(sample)), name="bare", route_prefix="/bare")
        results = {}
        for target, paths in (
            ("bare", {"page": "/bare/page", "labels": "/bare/labels"}),
            ("alray", {"page": "/v1/projects/load/rounds/0/selection",
                       "labels": "/v1/projects/load/labels"}),
        ):
            out, wall = asyncio.run(_run_load(url, token, paths, frames, cursors, args))
            results[target] = _report(target, out, wall, args, sha)
        for op in ("selection_page", "label_batch"):
            a, b = results["alray"][op], results["bare"][op]
            print(json.dumps({"bench": "serve_load", "op": op, "clients": args.clients,
                              "overhead_p50": round(a["p50_ms"] / b["p50_ms"], 2),
                              "overhead_p99": round(a["p99_ms"] / b["p99_ms"], 2),
                              "git_sha": sha}), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
