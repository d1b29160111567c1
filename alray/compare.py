"""Compare strategies side by side over several seeds (``alray compare``).

Every (strategy, seed) run is a Ray task with its own store under ``OUT/runs/`` (under
``storage.uri``/runs/ when that is an ``s3://`` URI); runs that were interrupted resume from
their store. Outputs: ``summary.json``, ``learning_curve.csv`` and
``learning_curve.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from alray.config import ProjectConfig
from alray.pipeline.ray_runtime import ensure_ray
from alray.storage.uri import is_remote, join

__all__ = ["THRESHOLDS", "build_summary", "compare", "labels_to_accuracy", "plot_summary"]

log = logging.getLogger(__name__)
THRESHOLDS = ("0.90", "0.95")


@ray.remote(num_cpus=0, max_retries=0)
def _run_one(cfg: ProjectConfig, strategy: str, seed: int, store_uri: str) -> list[dict]:
    import torch

    from alray.runner import learning_curve, run_project

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # many runs share the CPUs; one thread each avoids oversubscription
    store, _ = run_project(cfg, strategy=strategy, seed=seed, store_uri=store_uri)
    return learning_curve(store)


def labels_to_accuracy(labels: list[int], acc: list[float], threshold: float) -> int | None:
    """Fewest labels at which test accuracy first reached ``threshold`` (None: never)."""
    for n, a in zip(labels, acc, strict=True):
        if a is not None and a >= threshold:
            return int(n)
    return None


def build_summary(dataset: str, curves: dict[str, dict[int, list[dict]]]) -> dict:
    """``summary.json`` from per-strategy, per-seed learning curves."""
    out: dict = {"dataset": dataset, "strategies": {}}
    for name, by_seed in curves.items():
        seeds = sorted(by_seed)
        steps = sorted({p["labels"] for s in seeds for p in by_seed[s]})
        table = {s: {p["labels"]: p["test_accuracy"] for p in by_seed[s]} for s in seeds}
        acc = [[table[s].get(n) for s in seeds] for n in steps]
        out["strategies"][name] = {
            "seeds": seeds,
            "labels": steps,
            "accuracy": acc,
            "labels_to_accuracy": {
                t: [labels_to_accuracy([p["labels"] for p in by_seed[s]],
                                       [p["test_accuracy"] for p in by_seed[s]], float(t))
                    for s in seeds] for t in THRESHOLDS},
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
    for t in THRESHOLDS:
        ax.axhline(float(t), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("labeled frames")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{summary['dataset']}: test accuracy vs labels (mean, min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(cfg: ProjectConfig, strategies: list[str], seeds: list[int], out: Path, *,
            on_done: Callable[[str, int, list[dict], float], None] | None = None) -> dict:
    """Run every (strategy, seed) as a Ray task and write the summary files under ``out``."""
    from alray import acquisition

    for s in strategies:  # an unknown name fails here, listing the valid ones, before any work
        acquisition.requirements(s)
    ensure_ray(cfg.ray)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = {}
    for strategy in strategies:
        for seed in seeds:
            name = f"{strategy.replace(':', '-')}-seed{seed}"
            # An object-store storage.uri holds every run's store (any host can reach it);
            # otherwise the stores sit under OUT/runs/ on this machine.
            store = (join(cfg.storage.uri, "runs", name) if is_remote(cfg.storage.uri)
                     else str((out / "runs" / name).resolve()))
            jobs[_run_one.remote(cfg, strategy, seed, store)] = (strategy, seed)
    curves: dict[str, dict[int, list[dict]]] = {s: {} for s in strategies}
    pending = list(jobs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        strategy, seed = jobs[done[0]]
        curve = ray.get(done[0])
        curves[strategy][seed] = curve
        if on_done:
            on_done(strategy, seed, curve, time.perf_counter() - t0)
    summary = build_summary(Path(cfg.pool.uri).name, curves)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_csv(summary, out / "learning_curve.csv")
    plot_summary(summary, out / "learning_curve.png")
    return summary
