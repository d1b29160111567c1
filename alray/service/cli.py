"""Service verbs of the ``alray`` command: ``serve``, ``rounds``, ``selection``, ``labels``.

``alray serve`` runs the Ray Serve app; the other verbs are thin shells over
:class:`alray.client.Client` (``--url``/``$ALRAY_URL``, ``--token``/``$ALRAY_TOKEN``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from alray.service.ingress import INGRESS_ENV

__all__ = ["add_commands"]

console = Console(stderr=True)


def _remote_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report the service's refusals and unreachable URLs as one line and exit status 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        import httpx

        from alray.client import AlrayError

        try:
            return fn(args)
        except AlrayError as err:
            console.print(f"[red]error:[/red] {err}")
            return 2
        except httpx.HTTPError as err:
            console.print(f"[red]error:[/red] cannot reach the service: {err}")
            return 2

    return run


def _client(args: argparse.Namespace):
    from alray.client import Client

    return Client(args.url, args.token)


def _cmd_serve(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from alray.config import load_config
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.service.app import build_app
    from alray.service.catalog import Catalog
    from alray.service.ingress import use_ingress
    from alray.storage.uri import join

    cfg = load_config(args.config)
    root = args.root or os.environ.get("ALRAY_SERVICE_ROOT") or join(
        cfg.storage.uri.rstrip("/").rsplit("/", 1)[0], "service")
    app = build_app({"service_root": root})  # fails early if ALRAY_API_TOKENS is empty
    if cfg.ray.address:
        console.print(f"joining Ray at {cfg.ray.address}: its pods' environment picks the "
                      "Serve ingress (see README, 'Serving')")
    else:
        use_ingress(args.ingress)
    ensure_ray(cfg.ray)
    Catalog(root).add_project(cfg, replace=True)  # the served config's project, its own store
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app, name="alray", route_prefix="/", blocking=False)
    console.print(f"alray serving project {cfg.name!r} at http://{args.host}:{args.port} "
                  f"(docs: /docs, root: {root}, ingress: "
                  f"{'haproxy' if os.environ.get('RAY_SERVE_ENABLE_HA_PROXY') == '1' else 'proxy'}"
                  "); Ctrl-C or SIGTERM stops")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    serve.shutdown()
    ray.shutdown()
    return 0


@_remote_errors
def _cmd_rounds_start(args: argparse.Namespace) -> int:
    with _client(args) as c:
        out = c.start_round(args.project, force=args.force, strategy=args.strategy)
        console.print(f"round {out['next_round']}: job {out['job']['job_id']} started")
        if args.wait:
            job = c.wait(out["job"]["job_id"])
            print(json.dumps(job))
            return 0 if job["state"] == "succeeded" else 1
        print(json.dumps(out))
    return 0


@_remote_errors
def _cmd_rounds_show(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.round is not None:
            print(json.dumps(c.round(args.project, args.round), indent=2))
            return 0
        for r in c.rounds(args.project):
            m = r["metrics"]
            console.print(f"round {r['round']:>3} {r['state']:<15} {r['strategy'] or '':<10} "
                          f"selected={r['selected']:<4} labeled={r['labeled']:<4} "
                          f"val={m.get('val_accuracy')} test={m.get('test_accuracy')}")
    return 0


@_remote_errors
def _cmd_selection_export(args: argparse.Namespace) -> int:
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115
    try:
        with _client(args) as c:
            if args.format == "coco":
                json.dump(c.export_coco(args.project, args.round), out)
                out.write("\n")
            elif args.format == "label-studio":
                json.dump(list(c.selection(args.project, args.round, format="label-studio")),
                          out)
                out.write("\n")
            else:
                for item in c.selection(args.project, args.round, format="jsonl"):
                    out.write(json.dumps(item) + "\n")
    finally:
        if args.out:
            out.close()
    return 0


@_remote_errors
def _cmd_labels_push(args: argparse.Namespace) -> int:
    path = Path(args.file)
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with _client(args) as c:
        res = c.push_labels(args.project, items, overwrite=args.overwrite)
    for r in res["results"]:
        if r["status"] in ("conflict", "rejected"):
            console.print(f"{r['status']}: {r['frame_id']}: {r['reason']}")
    print(json.dumps({k: res[k] for k in ("accepted", "duplicate", "conflict", "rejected")}))
    return 0 if not (res["conflict"] or res["rejected"]) else 1


def _remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="service URL (default $ALRAY_URL or http://127.0.0.1:8000)")
    p.add_argument("--token", help="bearer token (default $ALRAY_TOKEN)")


def add_commands(sub) -> None:
    """Add the service verbs to the ``alray`` sub-command parser."""
    s = sub.add_parser("serve", help="serve projects over HTTP (Ray Serve + FastAPI)")
    s.add_argument("config")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--root", help="service root URI (default $ALRAY_SERVICE_ROOT, or "
                   "'service' next to the config's storage.uri)")
    s.add_argument("--ingress", choices=sorted(INGRESS_ENV),
                   default=os.environ.get("ALRAY_SERVE_INGRESS", "haproxy"),
                   help="HTTP ingress of a Ray started here: HAProxy in front of replicas that "
                   "answer HTTP themselves, or Ray Serve's Python proxy (default "
                   "$ALRAY_SERVE_INGRESS or haproxy)")
    s.set_defaults(func=_cmd_serve)

    r = sub.add_parser("rounds", help="start or show rounds of a served project")
    rs = r.add_subparsers(dest="rounds_command", required=True)
    st = rs.add_parser("start", help="start (or resume) the next round")
    st.add_argument("project")
    st.add_argument("--force", action="store_true", help="train despite missing labels")
    st.add_argument("--strategy")
    st.add_argument("--wait", action="store_true", help="wait for the job to finish")
    _remote(st)
    st.set_defaults(func=_cmd_rounds_start)
    sh = rs.add_parser("show", help="list rounds, or show one as JSON")
    sh.add_argument("project")
    sh.add_argument("round", nargs="?", type=int)
    _remote(sh)
    sh.set_defaults(func=_cmd_rounds_show)

    e = sub.add_parser("selection", help="export a round's selection")
    es = e.add_subparsers(dest="selection_command", required=True)
    ex = es.add_parser("export", help="write the selection (all pages)")
    ex.add_argument("project")
    ex.add_argument("round", type=int)
    ex.add_argument("--format", choices=["jsonl", "label-studio", "coco"], default="jsonl")
    ex.add_argument("--out", help="file (default stdout)")
    _remote(ex)
    ex.set_defaults(func=_cmd_selection_export)

    lb = sub.add_parser("labels", help="push labels to a served project")
    ls = lb.add_subparsers(dest="labels_command", required=True)
    pu = ls.add_parser("push", help="post a JSONL file of {frame_id, label, idempotency_key?}")
    pu.add_argument("project")
    pu.add_argument("file")
    pu.add_argument("--overwrite", action="store_true")
    _remote(pu)
    pu.set_defaults(func=_cmd_labels_push)
