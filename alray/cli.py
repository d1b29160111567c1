"""The ``alray`` command line.

Importing this module is cheap (no Ray, torch or LanceDB): every command imports what it needs
and checks the config (:mod:`alray.preflight`) before Ray starts. ``run``, ``compare`` and
``ingest`` print one line per step and send Ray's, LanceDB's and the raylet's own output to a
log file (its path is printed once) unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alray.config import ConfigError, load_config

__all__ = ["build_parser", "main"]

console = Console(highlight=False, soft_wrap=True)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ---- output ------------------------------------------------------------------------------
def _log_path(folder: str | None, name: str) -> Path:
    """``FOLDER/alray.log`` for a local folder; a temp file otherwise (an ``s3://`` store)."""
    local = (folder or "").removeprefix("file://")
    if local and "://" not in local:
        return Path(local) / "alray.log"
    return Path(tempfile.gettempdir()) / f"alray-{name}-{os.getpid()}.log"


@contextlib.contextmanager
def _output(verbose: bool, log_file: Path) -> Iterator[None]:
    """Unless ``verbose``: everything written to the process's stderr (Ray's and LanceDB's
    loggers, Python warnings, the raylet and other child processes, native libraries) goes
    to ``log_file`` while the command runs, as does Python logging at INFO. alray's own
    warnings still reach the terminal. Ray, if this command started it, stops inside, so its
    shutdown messages land in the file too."""
    import ray

    started_here = not ray.is_initialized()
    if verbose:
        logging.basicConfig(level=logging.INFO, format=_FORMAT, force=True)
        try:
            yield
        finally:
            if started_here and ray.is_initialized():
                ray.shutdown()
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"[dim]logs of Ray and LanceDB: {log_file} (--verbose shows them here)[/dim]")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    root, alray_log = logging.getLogger(), logging.getLogger("alray")
    old_level, old_handlers = root.level, root.handlers[:]
    show_warning = warnings.showwarning
    to_terminal = logging.StreamHandler(terminal)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def route_warning(message, category, filename, lineno, file=None, line=None):
        ours = f"{os.sep}alray{os.sep}" in filename and ".venv" not in filename
        show_warning(message, category, filename, lineno, terminal if ours else file, line)

    with open(log_file, "a", buffering=1) as f:
        os.dup2(f.fileno(), 2)
        try:
            root.handlers = [logging.StreamHandler(sys.stderr)]
            root.handlers[0].setFormatter(logging.Formatter(_FORMAT))
            root.setLevel(logging.INFO)
            alray_log.addHandler(to_terminal)
            warnings.showwarning = route_warning
            try:
                yield
            finally:
                if started_here and ray.is_initialized():
                    ray.shutdown()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            warnings.showwarning = show_warning
            alray_log.removeHandler(to_terminal)
            root.handlers, root.level = old_handlers, old_level
            terminal.close()


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _round_line(rec: dict, prefix: str = "") -> str:
    """One progress line for a round: labels, val/test accuracy, seconds."""
    from alray.runner import round_seconds

    m = rec["metrics"]
    state = rec["state"]
    what = ("" if state in ("COMPLETED", "STOPPED") else
            f"  [yellow]{state.lower().replace('_', ' ')}[/yellow]")
    labels = m.get("labels")
    return (f"{prefix}round {rec['round']:>2}  {'—' if labels is None else labels:>5} labels  "
            f"val {_pct(m.get('val_accuracy')):>6}  test {_pct(m.get('test_accuracy')):>6}  "
            f"{round_seconds(rec):6.1f} s{what}")


# ---- run ---------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    from alray.preflight import check_project
    from alray.storage.uri import join

    cfg = load_config(args.config)
    store_uri = join(args.out, "store") if args.out else None  # a folder or s3:// prefix
    check_project(cfg, strategies=[args.strategy] if args.strategy else [],
                  strategy_flag="--strategy", store_uri=store_uri, source=args.config)
    uri = store_uri or cfg.storage.uri
    folder = args.out or uri.rstrip("/").rsplit("/", 1)[0]
    with _output(args.verbose, _log_path(folder, cfg.name)):
        from alray.runner import awaiting_labels, learning_curve, run_project

        def ingested(s) -> None:
            console.print(f"ingest: {s.frames_added} frames added, {s.frames_present} present, "
                          f"{s.failed} failed ({s.seconds:.1f} s)")

        store, reason = run_project(cfg, strategy=args.strategy, seed=args.seed,
                                    store_uri=store_uri, check=False,
                                    on_round=lambda rec: console.print(_round_line(rec)),
                                    on_ingest=ingested)
        waiting = awaiting_labels(store) if reason == "awaiting_labels" else None
        curve = learning_curve(store) if args.json else None
    if waiting:
        _print_next_steps(args, store_uri, *waiting)
    else:
        console.print(f"stopped: {reason}")
    if args.json:
        print(json.dumps({"stop_reason": reason, "curve": curve,
                          "awaiting": None if not waiting else
                          {"round": waiting[0], "unlabeled": waiting[1]}}))
    return 0


def _print_next_steps(args: argparse.Namespace, store_uri: str | None, n: int,
                      left: int) -> None:
    """What to do when a round waits for labels: the exact commands."""
    q = shlex.quote
    cfg = q(args.config)
    store = f" --store {q(store_uri)}" if store_uri else ""
    again = " ".join(["alray run", cfg, *(f"{o} {q(str(v))}" for o, v in (
        ("--strategy", args.strategy), ("--seed", args.seed), ("--out", args.out))
        if v is not None)])
    console.print(f"round {n} awaits labels: {left} selected frames have none (no ground truth "
                  "to simulate an annotator with). Next:")
    for line in (f"alray selection export {cfg} --round {n} --format jsonl "
                 f"--out round-{n}.jsonl{store}",
                 f"# label each line of round-{n}.jsonl: add \"label\": a class name or index "
                 f"(--format label-studio or coco for a labeling tool)",
                 f"alray labels push {cfg} round-{n}.jsonl{store}",
                 again):
        console.print(f"  {escape(line)}")


# ---- compare -----------------------------------------------------------------------------
def _median(xs: list[int | None]) -> float | None:
    """The median, counting a seed that never reached the target as infinitely many labels."""
    vals = sorted(float("inf") if x is None else x for x in xs)
    if not vals:
        return None
    k = len(vals) // 2
    m = vals[k] if len(vals) % 2 else (vals[k - 1] + vals[k]) / 2
    return None if m == float("inf") else m


def _cell(xs: list[int | None]) -> str:
    """Median labels; per seed when the median is not reached."""
    m = _median(xs)
    if m is not None:
        return f"{m:g}"
    return "not reached (" + ", ".join("—" if x is None else str(x) for x in xs) + ")"


def _targets(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--targets={text!r}: expected test accuracies, e.g. 0.8,0.9") from None
    bad = [t for t in out if not 0 < t <= 1]
    if bad or not out:
        raise ConfigError(f"--targets={text!r}: each target must lie in (0, 1], e.g. 0.8,0.9")
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    from alray.preflight import check_project

    cfg = load_config(args.config)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    targets = _targets(args.targets)
    check_project(cfg, strategies=strategies, source=args.config)
    seeds = list(range(args.seeds))
    out = Path(args.out)
    console.print(f"comparing {', '.join(strategies)} over seeds {seeds} on {cfg.pool.uri} → "
                  f"{out}")
    with _output(args.verbose, _log_path(str(out), cfg.name)):
        from alray.compare import compare

        def done(strategy: str, seed: int, curve: list[dict], secs: float) -> None:
            last = curve[-1] if curve else {}
            console.print(f"{strategy} seed {seed}: done, {len(curve)} rounds, "
                          f"{last.get('labels')} labels, test {_pct(last.get('test_accuracy'))} "
                          f"({secs:.0f} s since start)")

        summary = compare(cfg, strategies, seeds, out, targets=targets, on_done=done,
                          on_round=lambda s, k, rec: console.print(
                              _round_line(rec, prefix=f"{s} seed {k}: ")))
    console.print(_summary_table(summary, len(seeds)))
    console.print(f"wrote {out / 'summary.json'}, {out / 'learning_curve.csv'}, "
                  f"{out / 'learning_curve.png'}; each run's store under {out / 'runs'}")
    return 0


def _summary_table(summary: dict, n_seeds: int) -> Table:
    targets = summary["targets"]
    table = Table(title=f"Labels needed to reach test accuracy ({summary['dataset']}, median "
                        f"over {n_seeds} seeds; targets: {summary['targets_from']})")
    table.add_column("strategy")
    table.add_column("final test acc. (median)", justify="right")
    for t in targets:
        table.add_column(f"labels to {float(t):.1%}".replace(".0%", "%"), justify="right")
    for name, s in summary["strategies"].items():
        finals = sorted(a for a in s["final_accuracy"] if a is not None)
        final = _pct(finals[len(finals) // 2]) if finals else "—"
        table.add_row(name, final, *(_cell(s["labels_to_accuracy"][t]) for t in targets))
    return table


# ---- ingest ------------------------------------------------------------------------------
def _cmd_ingest(args: argparse.Namespace) -> int:
    from alray.preflight import check_project

    cfg = load_config(args.config)
    check_project(cfg, source=args.config)
    with _output(args.verbose, _log_path(cfg.storage.uri.rstrip("/").rsplit("/", 1)[0],
                                         cfg.name)):
        from alray.pipeline.ingest import ingest
        from alray.pipeline.ray_runtime import ensure_ray
        from alray.storage import Store

        ensure_ray(cfg.ray)
        summary = ingest(cfg, Store(cfg.storage.uri))
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        console.print(f"sources={summary.sources} added={summary.frames_added} "
                      f"present={summary.frames_present} failed={summary.failed} "
                      f"({summary.seconds:.1f}s)")
        for f in summary.failures[:20]:
            console.print(f"  failed {escape(str(f['frame_id']))}: {escape(str(f['error']))}")
    return 0


# ---- parser ------------------------------------------------------------------------------
def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show Ray's and LanceDB's logs here instead of in alray.log")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alray", description="Active learning at video scale, on Ray.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO, and show Ray's "
                   "and LanceDB's logs here instead of in alray.log")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run rounds until a stopping rule fires (resumes)")
    r.add_argument("config")
    r.add_argument("--strategy", help="override acquisition.strategy")
    r.add_argument("--seed", type=int, help="override seed")
    r.add_argument("--out", help="where the store goes: OUT/store, a folder or under an s3:// "
                   "prefix (default: storage.uri)")
    r.add_argument("--json", action="store_true", help="print the learning curve as JSON")
    _verbose(r)
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("compare", help="run strategies side by side over seeds")
    c.add_argument("config")
    c.add_argument("--strategies", default="random,bald")
    c.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    c.add_argument("--targets", help="test accuracies to count labels to, e.g. 0.8,0.9 "
                   "(default: 95%% and 99%% of the best final test accuracy of any run, "
                   "rounded down to a whole percent)")
    c.add_argument("--out", default="runs/compare")
    _verbose(c)
    c.set_defaults(func=_cmd_compare)

    i = sub.add_parser("ingest", help="ingest the pool only and print a summary")
    i.add_argument("config")
    i.add_argument("--json", action="store_true")
    _verbose(i)
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
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format=_FORMAT)
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
