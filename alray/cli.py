"""The ``alray`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from alray.config import ConfigError, load_config

__all__ = ["main"]

console = Console()


def _cmd_run(args: argparse.Namespace) -> int:
    from alray.runner import learning_curve, run_project
    from alray.storage.uri import join

    cfg = load_config(args.config)
    store_uri = join(args.out, "store") if args.out else None  # a folder or s3:// prefix

    def show(rec: dict) -> None:
        m, d = rec["metrics"], rec["diagnostics"]
        console.print(f"round {rec['round']:>3} {rec['state']:<15} labels={m.get('labels')} "
                      f"val={_pct(m.get('val_accuracy'))} test={_pct(m.get('test_accuracy'))} "
                      f"reselected={d.get('reselected', 0)}")

    store, reason = run_project(cfg, strategy=args.strategy, seed=args.seed, store_uri=store_uri,
                                on_round=show)
    console.print(f"stopped: {reason}")
    if args.json:
        print(json.dumps({"stop_reason": reason, "curve": learning_curve(store)}))
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _median(xs: list[int | None]) -> str:
    vals = sorted(float("inf") if x is None else x for x in xs)
    if not vals:
        return "—"
    m = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
    return "not reached" if m == float("inf") else f"{m:g}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from alray.compare import THRESHOLDS, compare

    cfg = load_config(args.config)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = list(range(args.seeds))
    out = Path(args.out)

    def done(strategy: str, seed: int, curve: list[dict], secs: float) -> None:
        last = curve[-1] if curve else {}
        console.print(f"[{secs:6.0f}s] {strategy} seed={seed}: {len(curve)} rounds, "
                      f"{last.get('labels')} labels, test={_pct(last.get('test_accuracy'))}")

    console.print(f"comparing {strategies} over seeds {seeds} on {cfg.pool.uri} → {out}")
    summary = compare(cfg, strategies, seeds, out, on_done=done)
    table = Table(title=f"Labels needed to reach test accuracy ({summary['dataset']}, "
                        f"median over {len(seeds)} seeds)")
    table.add_column("strategy")
    for t in THRESHOLDS:
        table.add_column(f"{float(t):.0%}", justify="right")
    table.add_column("per seed (90%)", justify="left")
    for name, s in summary["strategies"].items():
        lta = s["labels_to_accuracy"]
        table.add_row(name, *(_median(lta[t]) for t in THRESHOLDS),
                      ", ".join("—" if x is None else str(x) for x in lta["0.90"]))
    console.print(table)
    console.print(f"wrote {out / 'summary.json'}, {out / 'learning_curve.csv'}, "
                  f"{out / 'learning_curve.png'}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from alray.pipeline.ingest import ingest
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.storage import Store

    cfg = load_config(args.config)
    ensure_ray(cfg.ray)
    summary = ingest(cfg, Store(cfg.storage.uri))
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        console.print(f"sources={summary.sources} added={summary.frames_added} "
                      f"present={summary.frames_present} failed={summary.failed} "
                      f"({summary.seconds:.1f}s)")
        for f in summary.failures[:20]:
            console.print(f"  failed {f['frame_id']}: {f['error']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alray", description="Active learning at video scale, on Ray.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run rounds until a stopping rule fires (resumes)")
    r.add_argument("config")
    r.add_argument("--strategy", help="override acquisition.strategy")
    r.add_argument("--seed", type=int, help="override seed")
    r.add_argument("--out", help="where the store goes: OUT/store, a folder or under an s3:// "
                   "prefix (default: storage.uri)")
    r.add_argument("--json", action="store_true", help="print the learning curve as JSON")
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("compare", help="run strategies side by side over seeds")
    c.add_argument("config")
    c.add_argument("--strategies", default="random,bald")
    c.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    c.add_argument("--out", default="runs/compare")
    c.set_defaults(func=_cmd_compare)

    i = sub.add_parser("ingest", help="ingest the pool only and print a summary")
    i.add_argument("config")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_ingest)
    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub) -> None:
    """Verbs of the service (``alray serve``, ``alray rounds`` …) and video tools (``similar``)."""
    import importlib
    import importlib.util

    for module in ("alray.service.cli", "alray.pipeline.cli_video"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
