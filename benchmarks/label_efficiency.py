"""Label efficiency: labels each strategy needs to reach a test accuracy, against random.

Built on ``alray compare`` (:func:`alray.compare.compare`): every (strategy, seed) run is the
project's own loop with the simulated annotator; this script only maps each benchmark
protocol to config overrides and summarises the runs.

Datasets (see :data:`DATASETS`):

- ``mnist``: the BatchBALD MNIST protocol as far as our data allows (the committed MNIST test
  set, 10,000 digits): split test 2,000 / val 1,000 / pool 7,000 (fractions 0.2 / 0.1, drawn by
  hash, so the counts are approximate); 2 labels per class to start; acquisition size 10; up to
  300 labels; the BatchBALD MNIST CNN; Adam lr 1e-3, batch 64, 5,056 samples per epoch, at most
  30 epochs, patience 3 on val; weights re-initialised each round; the whole pool scored. Run
  twice: ``mnist`` (``model.mc_layers: all``, as the paper) and ``mnist-head``.
- ``gtsrb``: test 800 / val 400 / pool rest; 1 label per class; acquisition 20; up to 1,000
  labels. The committed subset has fewer frames than that needs: the split is scaled down (same
  test:val ratio) so the pool can hold the budget (:func:`split_fractions`).
- ``vehicles``: the GTI vehicle/non-vehicle manifest, binary; 20 seed labels; batches of 20;
  budget 140.

Outputs under ``--results`` (default ``benchmarks/results/``): ``label_efficiency.json`` (keyed
by dataset, each in the shape of compare's ``summary.json`` plus ``protocol`` and
``round_seconds``; merged with the keys already there), ``label_efficiency.md`` (labels to
each target: p25 / median / p75 over seeds, "not reached"), ``<dataset>_learning_curve.png``.
Stdout: one JSON object per line (ratios against random from the same run); logs on stderr.

Usage::

    .venv/bin/python benchmarks/label_efficiency.py                 # all datasets, 3 seeds
    .venv/bin/python benchmarks/label_efficiency.py --datasets mnist --seeds 6
    .venv/bin/python benchmarks/label_efficiency.py --quick         # 1 seed, 3 strategies, 100 labels
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("random", "topk:entropy", "topk:bald", "batchbald", "badge", "kcenter",
              "powerbald")
QUICK_STRATEGIES = ("random", "topk:bald", "batchbald")
QUICK_BUDGET = 100
NOT_REACHED = "not reached"

log = logging.getLogger("bench.label_efficiency")


@dataclass(frozen=True)
class Protocol:
    """One benchmark dataset: its config, split, seed set, batches, budget and targets."""

    config: str
    test: int
    val: int
    batch: int
    budget: int
    targets: tuple[float, ...]
    initial_per_class: int | None = None
    initial_labels: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    #: result key -> extra overrides (one compare run each)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


_LOCAL = {"train.backend": "local", "train.reinit_each_round": True,
          "acquisition.candidate_pool": None, "loop.target_accuracy": None,
          "loop.plateau_rounds": None}

DATASETS: dict[str, Protocol] = {
    "mnist": Protocol(
        config="configs/quickstart.yaml", test=2000, val=1000, batch=10, budget=300,
        targets=(0.90, 0.95), initial_per_class=2,
        overrides={**_LOCAL, "model.architecture": "mnist_cnn", "train.lr": 1e-3,
                   "train.batch_size": 64, "train.epoch_samples": 5056,
                   "train.max_epochs": 30, "train.patience": 3},
        variants={"mnist": {"model.mc_layers": "all"},
                  "mnist-head": {"model.mc_layers": "head"}}),
    "gtsrb": Protocol(
        config="configs/gtsrb-resnet.yaml", test=800, val=400, batch=20, budget=1000,
        targets=(0.80, 0.90), initial_per_class=1, overrides=dict(_LOCAL),
        variants={"gtsrb": {}}),
    "vehicles": Protocol(
        config="configs/vehicles-manifest.yaml", test=135, val=67, batch=20, budget=140,
        targets=(0.90, 0.95), initial_labels=20, overrides=dict(_LOCAL),
        variants={"vehicles": {}}),
}


# ---- pure parts ----------------------------------------------------------------------------

def split_fractions(n_frames: int, test: int, val: int, pool_needed: int) -> tuple[float, float]:
    """``(test_fraction, val_fraction)`` giving about ``test``/``val`` frames out of
    ``n_frames``; when that leaves fewer than ``pool_needed`` pool frames, both are scaled down
    by one factor (keeping their ratio) so the pool holds ``pool_needed``.

    Raises:
        ValueError: the data cannot hold ``pool_needed`` pool frames plus any test/val.
    """
    if n_frames <= pool_needed:
        raise ValueError(f"{n_frames} frames cannot hold a pool of {pool_needed} plus test/val")
    if n_frames - test - val < pool_needed:
        scale = (n_frames - pool_needed) / (test + val)
        test, val = test * scale, val * scale
    return test / n_frames, val / n_frames


def protocol_overrides(p: Protocol, n_frames: int, variant: dict[str, Any],
                       budget: int | None = None) -> dict[str, Any]:
    """Dotted config overrides of protocol ``p`` on data of ``n_frames`` frames."""
    budget = budget or p.budget
    test_f, val_f = split_fractions(n_frames, p.test, p.val, budget)
    seed = p.initial_labels or 1  # rounds needed to fill the budget, with slack
    out = {**p.overrides, **variant,
           "pool.test_fraction": test_f, "pool.val_fraction": val_f,
           "acquisition.batch_size": p.batch, "loop.label_budget": budget,
           "loop.max_rounds": math.ceil(max(budget - seed, 0) / p.batch) + 1,
           "loop.initial_per_class": p.initial_per_class}
    if p.initial_labels is not None:
        out["loop.initial_labels"] = p.initial_labels
    return out


def percentile(values: list[int | None], q: float) -> float | None:
    """The ``q``-th percentile (linear, as numpy's default) of label counts, a run that never
    reached the target counting as infinitely many; None when the percentile needs such a run."""
    xs = sorted(math.inf if v is None else float(v) for v in values)
    if not xs:
        return None
    pos = q / 100 * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    if math.isinf(xs[lo]) or (frac > 0 and math.isinf(xs[hi])):
        return None
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def spread(values: list[int | None]) -> tuple[float | None, float | None, float | None]:
    """p25, median and p75 over seeds (None: not reached)."""
    return percentile(values, 25), percentile(values, 50), percentile(values, 75)


def cell(v: float | None) -> str:
    """A table cell: a label count, or "not reached"."""
    return NOT_REACHED if v is None else f"{v:g}"


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` when both are known (labels of a strategy / labels of random)."""
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def mean_curve(s: dict) -> dict[int, float]:
    """Label count -> mean test accuracy over the seeds that measured it."""
    out = {}
    for n, row in zip(s["labels"], s["accuracy"], strict=True):
        vals = [a for a in row if a is not None]
        if vals:
            out[int(n)] = float(np.mean(vals))
    return out


def mean_gap(s: dict, base: dict) -> float | None:
    """Mean over common label counts of (strategy's mean curve - ``base``'s mean curve)."""
    a, b = mean_curve(s), mean_curve(base)
    common = sorted(set(a) & set(b))
    return round(float(np.mean([a[n] - b[n] for n in common])), 4) if common else None


def labels_to_reach(s: dict, threshold: float) -> list[int | None]:
    """Per seed: fewest labels at which test accuracy first reached ``threshold``."""
    from alray.compare import labels_to_accuracy

    return [labels_to_accuracy(s["labels"], [row[i] for row in s["accuracy"]], threshold)
            for i in range(len(s["seeds"]))]


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def bench_lines(key: str, summary: dict, sha: str) -> list[dict]:
    """The stdout records of one dataset's summary: per strategy and target, labels needed
    (p25/median/p75) and the ratio of medians against random of the same run; plus labels to
    reach random's median final accuracy and the mean-curve gap to random."""
    strategies = summary["strategies"]
    rnd = strategies.get("random")
    secs = summary.get("round_seconds", {})
    rnd_final = _median(rnd["final_accuracy"]) if rnd else None
    lines = []
    for name, s in strategies.items():
        base = {"bench": "label_efficiency", "dataset": key, "strategy": name,
                "seeds": len(s["seeds"]), "git_sha": sha}
        for t, per_seed in s["labels_to_accuracy"].items():
            p25, med, p75 = spread(per_seed)
            rmed = percentile(rnd["labels_to_accuracy"][t], 50) if rnd else None
            lines.append({**base, "target": t, "labels_p25": p25, "labels_median": med,
                          "labels_p75": p75, "random_labels_median": rmed,
                          "ratio_vs_random": ratio(med, rmed)})
        extra = {**base, "metric": "vs_random_final",
                 "final_accuracy_median": _median(s["final_accuracy"]),
                 "scoring_s_per_round": secs.get(name, {}).get("scoring"),
                 "selecting_s_per_round": secs.get(name, {}).get("selecting")}
        if rnd and rnd_final is not None:
            need = percentile(labels_to_reach(s, rnd_final), 50)
            extra.update(random_final_accuracy=rnd_final, random_final_labels=max(rnd["labels"]),
                         labels_to_random_final_median=need,
                         ratio_vs_random=ratio(need, max(rnd["labels"])),
                         mean_curve_gap_vs_random=mean_gap(s, rnd))
        lines.append(extra)
    return lines


def markdown(results: dict[str, dict]) -> str:
    """Tables of labels to each target (p25 / median / p75 over seeds) per dataset."""
    out = ["# Label efficiency", "",
           "Labels to reach each test accuracy: p25 / median / p75 over seeds (a seed that "
           f"never reached it counts as infinitely many; \"{NOT_REACHED}\" where the percentile "
           "needs such a seed). Scoring and selecting: median seconds per round.", ""]
    for key, summary in results.items():
        targets = summary["targets"]
        proto = summary.get("protocol", {})
        out += [f"## {key}", "", f"Protocol: `{json.dumps(proto, sort_keys=True)}`", "",
                "| strategy | seeds | final acc (median) | "
                + " | ".join(f"labels to {float(t):.0%}" for t in targets)
                + " | scoring s/round | selecting s/round |",
                "|---|---:|---:|" + "---|" * len(targets) + "---:|---:|"]
        secs = summary.get("round_seconds", {})
        for name, s in summary["strategies"].items():
            final = _median(s["final_accuracy"])
            cells = [" / ".join(cell(v) for v in spread(s["labels_to_accuracy"][t]))
                     for t in targets]
            sc = secs.get(name, {})
            out.append(f"| {name} | {len(s['seeds'])} | "
                       f"{'-' if final is None else f'{final:.3f}'} | " + " | ".join(cells)
                       + f" | {_fmt_s(sc.get('scoring'))} | {_fmt_s(sc.get('selecting'))} |")
        out.append("")
    return "\n".join(out)


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


# ---- running -------------------------------------------------------------------------------

def count_frames(cfg) -> int:
    """Frames in the pool of ``cfg`` (IDX header, or the label/manifest CSV's rows)."""
    uri = Path(cfg.pool.uri)
    if cfg.pool.format == "idx":
        f = next(uri.glob("*labels-idx1-ubyte*"))
        with (gzip.open(f) if f.suffix == ".gz" else f.open("rb")) as fh:
            return int.from_bytes(fh.read(8)[4:8], "big")
    table = uri if uri.is_file() else uri / (cfg.pool.labels_file or "labels.csv")
    with table.open(newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def round_seconds(cfg, out: Path, strategies: list[str], seeds: list[int]) -> dict:
    """Per strategy: median seconds per acquisition round of scoring and of selecting."""
    from alray.compare import run_store
    from alray.storage import Store

    res = {}
    for name in strategies:
        steps: dict[str, list[float]] = {"scoring": [], "selecting": []}
        for seed in seeds:
            for rec in Store(run_store(cfg, out, name, seed)).rounds():
                timings = rec["diagnostics"].get("timings") or {}
                for step, vals in steps.items():
                    if step in timings:
                        vals.append(float(timings[step]))
        res[name] = {k: (round(float(np.median(v)), 3) if v else None) for k, v in steps.items()}
    return res


def git_sha() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=REPO)
    return out.stdout.strip() or "uncommitted"


def run_dataset(name: str, strategies: list[str], seeds: list[int], work: Path,
                budget: int | None, variants: list[str] | None) -> dict[str, dict]:
    """Run every variant of dataset ``name`` with ``alray compare``; returns key -> summary."""
    from alray.compare import compare
    from alray.config import load_config

    p = DATASETS[name]
    base = load_config(REPO / p.config)
    n = count_frames(base)
    results = {}
    for key, variant in p.variants.items():
        if variants is not None and key not in variants:
            continue
        overrides = protocol_overrides(p, n, variant, budget)
        cfg = base.with_overrides(**overrides)
        out = work / key
        log.info("%s: %d frames, %d strategies x %d seeds -> %s", key, n, len(strategies),
                 len(seeds), out)
        t0 = time.perf_counter()

        def on_round(strategy: str, seed: int, rec: dict, key: str = key) -> None:
            m = rec.get("metrics", {})
            log.info("%s %s seed %d round %s: %s labels, test %s", key, strategy, seed,
                     rec.get("round"), m.get("labels"), m.get("test_accuracy"))

        summary = compare(cfg, strategies, seeds, out, targets=list(p.targets),
                          on_round=on_round)
        summary["protocol"] = {"config": p.config, "frames": n, **overrides}
        summary["round_seconds"] = round_seconds(cfg, out, strategies, seeds)
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        results[key] = summary
    return results


def mc_layers_lines(results: dict[str, dict], sha: str) -> list[dict]:
    """``mnist-head`` against ``mnist`` (all): scoring-time ratio and labels to each target."""
    if "mnist" not in results or "mnist-head" not in results:
        return []
    a, h = results["mnist"], results["mnist-head"]
    lines = []
    for name in a["strategies"]:
        if name not in h["strategies"]:
            continue
        sa = a["round_seconds"].get(name, {}).get("scoring")
        sh = h["round_seconds"].get(name, {}).get("scoring")
        rec = {"bench": "label_efficiency.mc_layers", "dataset": "mnist", "strategy": name,
               "scoring_s_all": sa, "scoring_s_head": sh, "scoring_ratio_head_over_all":
               ratio(sh, sa), "git_sha": sha}
        for t in a["targets"]:
            rec[f"labels_median_all_{t}"] = percentile(a["strategies"][name]
                                                       ["labels_to_accuracy"][t], 50)
            rec[f"labels_median_head_{t}"] = percentile(h["strategies"][name]
                                                        ["labels_to_accuracy"][t], 50)
        lines.append(rec)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seeds", type=int, default=3, help="seeds per strategy (0..N-1)")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: 1 seed, "
                    f"{', '.join(QUICK_STRATEGIES)}, {QUICK_BUDGET} labels, mnist (all) only")
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default benchmarks/results; --quick: "
                    "runs/bench-al-quick/results)")
    ap.add_argument("--work", type=Path, default=None,
                    help="run stores (default runs/bench-al; --quick: runs/bench-al-quick)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[bench] %(asctime)s %(message)s")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        ap.error(f"--datasets: unknown {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds, budget, variants = list(range(args.seeds)), None, None
    if args.quick:
        datasets, strategies, seeds = ["mnist"], list(QUICK_STRATEGIES), [0]
        budget, variants = QUICK_BUDGET, ["mnist"]
    work = REPO / (args.work or Path("runs/bench-al-quick" if args.quick else "runs/bench-al"))
    res_dir = REPO / (args.results or Path("runs/bench-al-quick/results" if args.quick
                                           else "benchmarks/results"))
    res_dir.mkdir(parents=True, exist_ok=True)
    sha, t0 = git_sha(), time.perf_counter()
    fresh: dict[str, dict] = {}
    for name in datasets:
        fresh.update(run_dataset(name, strategies, seeds, work, budget, variants))
    from alray.compare import plot_summary

    path = res_dir / "label_efficiency.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for key, summary in fresh.items():
        summary["git_sha"] = sha
        merged[key] = summary
        plot_summary(summary, res_dir / f"{key}_learning_curve.png")
        for line in bench_lines(key, summary, sha):
            print(json.dumps(line), flush=True)
    for line in mc_layers_lines(fresh, sha):
        print(json.dumps(line), flush=True)
    path.write_text(json.dumps(merged, indent=2))
    (res_dir / "label_efficiency.md").write_text(markdown(merged))
    print(json.dumps({"bench": "label_efficiency.wall", "datasets": list(fresh),
                      "strategies": strategies, "seeds": len(seeds),
                      "seconds": round(time.perf_counter() - t0, 1), "git_sha": sha}),
          flush=True)
    log.info("wrote %s, %s", path, res_dir / "label_efficiency.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
