"""Compare strategies side by side over several seeds (``alray compare``).

Every (strategy, seed) run is a Ray task with its own store under ``OUT/runs/`` (under
``storage.uri``/runs/ when that is an ``s3://`` URI); runs that were interrupted resume from
their store. The driver follows the runs' stores and reports each finished round.

Outputs under ``OUT``: ``summary.json`` (per strategy: seeds, label counts, test accuracy per
seed, labels needed to reach each target), ``learning_curve.csv`` (one row per strategy, seed
and round) and ``learning_curve.png``. The targets are given (``--targets``) or derived from
the data: :data:`TARGET_FRACTIONS` of the best final test accuracy any run reached.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from alray.config import ProjectConfig
from alray.pipeline.ray_runtime import ensure_ray
from alray.storage.uri import is_remote, join

__all__ = ["TARGET_FRACTIONS", "build_summary", "compare", "default_targets",
           "labels_to_accuracy", "plot_summary", "run_store", "target_key"]

log = logging.getLogger(__name__)
#: Default targets: these fractions of the best final test accuracy of any run, rounded down
#: to a whole percent (a best of 0.95 gives 0.90 and 0.94).
TARGET_FRACTIONS = (0.95, 0.99)


@ray.remote(num_cpus=0, max_retries=0)
def _run_one(cfg: ProjectConfig, strategy: str, seed: int, store_uri: str) -> list[dict]:
    import torch

    from alray.runner import learning_curve, run_project

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # many runs share the CPUs; one thread each avoids oversubscription
    store, _ = run_project(cfg, strategy=strategy, seed=seed, store_uri=store_uri, check=False)
    return learning_curve(store)


def labels_to_accuracy(labels: list[int], acc: list[float], threshold: float) -> int | None:
    """Fewest labels at which test accuracy first reached ``threshold`` (None: never)."""
    for n, a in zip(labels, acc, strict=True):
        if a is not None and a >= threshold:
            return int(n)
    return None


def target_key(t: float) -> str:
    """The key of target ``t`` in ``labels_to_accuracy``: ``"0.90"``, ``"0.925"``."""
    return f"{t:.2f}" if abs(t * 100 - round(t * 100)) < 1e-9 else f"{t:g}"


def default_targets(curves: dict[str, dict[int, list[dict]]]) -> list[float]:
    """:data:`TARGET_FRACTIONS` of the best final test accuracy of any run, rounded down to a
    whole percent (none when no run measured a test accuracy)."""
    finals = [c[-1]["test_accuracy"] for by_seed in curves.values() for c in by_seed.values()
              if c and c[-1].get("test_accuracy") is not None]
    if not finals:
        return []
    best = max(finals)
    return sorted({math.floor(f * best * 100 + 1e-9) / 100 for f in TARGET_FRACTIONS} - {0.0})


def build_summary(dataset: str, curves: dict[str, dict[int, list[dict]]],
                  targets: list[float] | None = None) -> dict:
    """``summary.json`` from per-strategy, per-seed learning curves.

    Args:
        dataset: the pool's name.
        curves: strategy -> seed -> :func:`alray.runner.learning_curve` points.
        targets: test accuracies to count labels to; None: :func:`default_targets`.
    """
    given = targets is not None
    targets = sorted(targets) if given else default_targets(curves)
    keys = [target_key(t) for t in targets]
    out: dict = {"dataset": dataset, "targets": keys,
                 "targets_from": "--targets" if given else
                 f"{', '.join(f'{f:.0%}' for f in TARGET_FRACTIONS)} of the best final test "
                 "accuracy, rounded down to a whole percent", "strategies": {}}
    for name, by_seed in curves.items():
        seeds = sorted(by_seed)
        steps = sorted({p["labels"] for s in seeds for p in by_seed[s]})
        table = {s: {p["labels"]: p["test_accuracy"] for p in by_seed[s]} for s in seeds}
        acc = [[table[s].get(n) for s in seeds] for n in steps]
        out["strategies"][name] = {
            "seeds": seeds,
            "labels": steps,
            "accuracy": acc,
            "final_accuracy": [by_seed[s][-1]["test_accuracy"] if by_seed[s] else None
                               for s in seeds],
            "labels_to_accuracy": {
                k: [labels_to_accuracy([p["labels"] for p in by_seed[s]],
                                       [p["test_accuracy"] for p in by_seed[s]], t)
                    for s in seeds] for k, t in zip(keys, targets, strict=True)},
        }
    return out


def write_csv(summary: dict, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "seed", "labels", "test_accuracy"])
        for name, s in summary["strategies"].items():
            for n, row in zip(s["labels"], s["accuracy"], strict=True):
                for seed, a in zip(s["seeds"], row, strict=True):
                    if a is not None:
                        w.writerow([name, seed, n, f"{a:.4f}"])


def plot_summary(summary: dict, path: Path) -> None:
    """Test accuracy vs labels: mean line and min-max band over seeds, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in summary["strategies"].items():
        labels = np.asarray(s["labels"], dtype=float)
        acc = np.array([[np.nan if a is None else a for a in row] for row in s["accuracy"]])
        mean = np.nanmean(acc, axis=1)
        ax.plot(labels, mean, marker="o", ms=3, label=f"{name} (n={len(s['seeds'])})")
        ax.fill_between(labels, np.nanmin(acc, axis=1), np.nanmax(acc, axis=1), alpha=0.2)
    for t in summary.get("targets", []):
        ax.axhline(float(t), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("labeled frames")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{summary['dataset']}: test accuracy vs labels (mean, min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_store(cfg: ProjectConfig, out: Path, strategy: str, seed: int) -> str:
    """Where the run of ``(strategy, seed)`` keeps its store: ``storage.uri``/runs/<name> when
    that is an object store (any host can reach it), else ``OUT/runs/<name>`` here."""
    name = f"{strategy.replace(':', '-')}-seed{seed}"
    if is_remote(cfg.storage.uri):
        return join(cfg.storage.uri, "runs", name)
    return str((out / "runs" / name).resolve())


def _finished_rounds(uri: str) -> list[dict]:
    """The finished round records in the store at ``uri`` (none while it does not exist).

    A fresh :class:`Store` each time: an open LanceDB table would not see the run's new
    versions."""
    from alray.storage import Store

    if not is_remote(uri) and not Path(uri).is_dir():
        return []
    try:
        return [r for r in Store(uri).rounds() if r["state"] in ("COMPLETED", "STOPPED")]
    except (OSError, ValueError, LookupError) as err:  # caught mid-write: next poll
        log.debug("cannot read rounds of %s yet: %s", uri, err)
        return []


def compare(cfg: ProjectConfig, strategies: list[str], seeds: list[int], out: Path, *,
            targets: list[float] | None = None,
            on_done: Callable[[str, int, list[dict], float], None] | None = None,
            on_round: Callable[[str, int, dict], None] | None = None,
            poll_s: float = 2.0) -> dict:
    """Run every (strategy, seed) as a Ray task and write the summary files under ``out``.

    Args:
        cfg: the project config (every run's, but for strategy, seed and store).
        strategies: strategy names.
        seeds: seeds; each strategy runs once per seed.
        out: the output folder.
        targets: test accuracies to count labels to (None: :func:`default_targets`).
        on_done: called when a run ends, with its strategy, seed, curve and the seconds since
            the start.
        on_round: called with (strategy, seed, round record) for each round that finishes
            during this call, read from the runs' stores every ``poll_s`` seconds.

    Raises:
        ConfigError: a strategy or the config cannot run here (before any work).
    """
    from alray.preflight import check_project

    check_project(cfg, strategies=strategies)  # before Ray: names the bad key
    from alray.pipeline.ingest import require_ground_truth

    require_ground_truth(cfg)  # a simulation needs the pool's own labels
    ensure_ray(cfg.ray)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = {}
    seen: dict[str, int] = {}  # store -> rounds reported (a resumed run's earlier ones: none)
    for strategy in strategies:
        for seed in seeds:
            uri = run_store(cfg, out, strategy, seed)
            if on_round:
                seen[uri] = len(_finished_rounds(uri))
            jobs[_run_one.remote(cfg, strategy, seed, uri)] = (strategy, seed, uri)
    curves: dict[str, dict[int, list[dict]]] = {s: {} for s in strategies}

    def report(refs: list) -> None:
        for ref in refs:
            strategy, seed, uri = jobs[ref]
            recs = _finished_rounds(uri)
            for rec in recs[seen.get(uri, 0):]:
                on_round(strategy, seed, rec)
            seen[uri] = max(seen.get(uri, 0), len(recs))

    pending = list(jobs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=poll_s if on_round else None)
        if on_round:
            report(done + pending)
        for ref in done:
            strategy, seed, _ = jobs[ref]
            curve = ray.get(ref)
            curves[strategy][seed] = curve
            if on_done:
                on_done(strategy, seed, curve, time.perf_counter() - t0)
    summary = build_summary(Path(cfg.pool.uri).name, curves, targets)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_csv(summary, out / "learning_curve.csv")
    plot_summary(summary, out / "learning_curve.png")
    return summary
