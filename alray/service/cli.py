"""Service verbs of the ``alray`` command: ``serve``, ``rounds``, ``selection``, ``labels``.

``alray serve`` runs the Ray Serve app. The other verbs take a served project's name and
call :class:`alray.client.Client` (``--url``/``$ALRAY_URL``, ``--token``/``$ALRAY_TOKEN``), or,
given a config file instead (and no ``--url``), work on the project's store directly
(:mod:`alray.local`: the same export formats, label validation and ``label_events`` log).
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
    # Fails early if ALRAY_API_TOKENS is empty. The config's folder is the data root when
    # ALRAY_DATA_ROOTS is unset; exported URLs use the bound address unless ALRAY_PUBLIC_URL.
    app = build_app({"service_root": root, "config_dir": str(Path(args.config).resolve().parent),
                     "bind_url": f"http://{args.host}:{args.port}"})
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


def _local_config(args: argparse.Namespace) -> Path | None:
    """The config file when a verb runs in local mode: the first positional names a config
    file (``*.yaml``/``*.yml`` or an existing file) and no ``--url`` was given."""
    if getattr(args, "url", None):
        return None
    target = Path(args.project)
    if target.suffix in (".yaml", ".yml") or target.is_file():
        return target
    return None


def _local_store(args: argparse.Namespace, path: Path):
    from alray.config import load_config
    from alray.local import open_store

    cfg = load_config(path)
    return cfg, open_store(cfg, args.store)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _round_line(r: dict) -> str:
    m = r["metrics"]
    return (f"round {r['round']:>3} {r['state']:<15} {r['strategy'] or '':<10} "
            f"selected={r['selected']:<4} labeled={r['labeled']:<4} "
            f"val={_pct(m.get('val_accuracy'))} test={_pct(m.get('test_accuracy'))}")


@_remote_errors
def _cmd_rounds_start(args: argparse.Namespace) -> int:
    if _local_config(args):
        raise ValueError(f"`alray rounds start` drives a served project; for the config "
                         f"{args.project} run `alray run {args.project}` (it resumes)")
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
    path = _local_config(args)
    if path:
        from alray.local import round_counts, round_detail

        _, store = _local_store(args, path)
        counts = round_counts(store)
        recs = [round_detail(r, counts) for r in store.rounds()]
    else:
        with _client(args) as c:
            recs = ([c.round(args.project, args.round)] if args.round is not None
                    else c.rounds(args.project))
    if args.round is not None:
        rec = next((r for r in recs if r["round"] == args.round), None)
        if rec is None:
            raise ValueError(f"round {args.round}: no such round (rounds: "
                             f"{[r['round'] for r in recs]})")
        print(json.dumps(rec, indent=2))
        return 0
    for r in recs:
        print(_round_line(r))
    return 0


def _media_dir(args: argparse.Namespace, n: int) -> Path:
    if args.media:
        return Path(args.media)
    if args.out:
        out = Path(args.out)
        return out.with_name(f"{out.stem}-media")
    return Path(f"round-{n}-media")


@_remote_errors
def _cmd_selection_export(args: argparse.Namespace) -> int:
    n = args.round_opt if args.round_opt is not None else args.round
    if n is None:
        raise ValueError("selection export: give the round, e.g. --round 1")
    path = _local_config(args)
    local = _local_store(args, path) if path else None  # fails before the file is created
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115
    try:
        if local:
            from alray.local import export_selection

            media = _media_dir(args, n)
            count = export_selection(*local, n, args.format, out, media_dir=media)
            images = f"; images of decoded frames: {media}" if media.is_dir() else ""
            console.print(f"round {n}: {count} frames → {args.out or 'stdout'}{images}")
            return 0
        with _client(args) as c:
            if args.format == "coco":
                json.dump(c.export_coco(args.project, n), out)
                out.write("\n")
            elif args.format == "label-studio":
                json.dump(list(c.selection(args.project, n, format="label-studio")), out)
                out.write("\n")
            else:
                for item in c.selection(args.project, n, format="jsonl"):
                    out.write(json.dumps(item) + "\n")
    finally:
        if args.out:
            out.close()
    return 0


@_remote_errors
def _cmd_labels_push(args: argparse.Namespace) -> int:
    from alray.local import read_label_file

    items, skipped = read_label_file(Path(args.file))
    if skipped:
        console.print(f"skipped {skipped} lines without a label")
    if not items:
        raise ValueError(f"{args.file}: no labels to push (give each line a \"label\")")
    path = _local_config(args)
    if path:
        from alray.local import push_labels

        res = push_labels(*_local_store(args, path), items, overwrite=args.overwrite)
    else:
        with _client(args) as c:
            res = c.push_labels(args.project, items, overwrite=args.overwrite)
    for r in res["results"]:
        if r["status"] in ("conflict", "rejected"):
            console.print(f"{r['status']}: {r['frame_id']}: {r['reason']}")
    print(json.dumps({k: res[k] for k in ("accepted", "duplicate", "conflict", "rejected")}))
    return 0 if not (res["conflict"] or res["rejected"]) else 1


def _remote(p: argparse.ArgumentParser, *, local: bool = True) -> None:
    p.add_argument("--url", help="service URL (default $ALRAY_URL or http://127.0.0.1:8000)")
    p.add_argument("--token", help="bearer token (default $ALRAY_TOKEN)")
    if local:
        p.add_argument("--store", help="local mode: the project's store (default the "
                       "config's storage.uri; OUT/store after `alray run --out OUT`)")


_TARGET = ("a served project's name (HTTP: --url or $ALRAY_URL), or a config file (*.yaml): "
           "local mode, on the project's store without the service")


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

    r = sub.add_parser("rounds", help="start or show rounds (a served project, or a config's "
                       "store)")
    rs = r.add_subparsers(dest="rounds_command", required=True)
    st = rs.add_parser("start", help="start (or resume) the next round of a served project")
    st.add_argument("project")
    st.add_argument("--force", action="store_true", help="train despite missing labels")
    st.add_argument("--strategy")
    st.add_argument("--wait", action="store_true", help="wait for the job to finish")
    _remote(st, local=False)
    st.set_defaults(func=_cmd_rounds_start)
    sh = rs.add_parser("show", help="list rounds, or show one as JSON")
    sh.add_argument("project", metavar="PROJECT|CONFIG", help=_TARGET)
    sh.add_argument("round", nargs="?", type=int)
    _remote(sh)
    sh.set_defaults(func=_cmd_rounds_show)

    e = sub.add_parser("selection", help="export a round's selection")
    es = e.add_subparsers(dest="selection_command", required=True)
    ex = es.add_parser("export", help="write the selection (all pages)")
    ex.add_argument("project", metavar="PROJECT|CONFIG", help=_TARGET)
    ex.add_argument("round", nargs="?", type=int, help="the round (or --round)")
    ex.add_argument("--round", dest="round_opt", type=int, metavar="N", help="the round")
    ex.add_argument("--format", choices=["jsonl", "label-studio", "coco"], default="jsonl")
    ex.add_argument("--out", help="file (default stdout)")
    ex.add_argument("--media", help="local mode: folder for PNGs of frames that have no image "
                    "file of their own (video, IDX); default OUT's name + '-media'")
    _remote(ex)
    ex.set_defaults(func=_cmd_selection_export)

    lb = sub.add_parser("labels", help="push labels (to a served project, or a config's store)")
    ls = lb.add_subparsers(dest="labels_command", required=True)
    pu = ls.add_parser("push", help="push a JSONL file of {frame_id, label, idempotency_key?} "
                       "(an exported file with labels added works; lines without one are "
                       "skipped)")
    pu.add_argument("project", metavar="PROJECT|CONFIG", help=_TARGET)
    pu.add_argument("file")
    pu.add_argument("--overwrite", action="store_true")
    _remote(pu)
    pu.set_defaults(func=_cmd_labels_push)
