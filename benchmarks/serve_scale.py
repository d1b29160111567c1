"""Service latency at pool scale: project GET and ``/metrics`` on a large vs a small store.

Builds two synthetic project stores in the same run (default 1,000,000 and 10,000 frames:
tiny 8-byte images, 8-d embeddings, every split and status, a third of the pool scored),
indexed as ingest indexes them, registers each in its own service root, then times the route
functions in process (``project_public`` for ``GET /v1/projects/{p}``, the metrics renderer
for ``GET /metrics`` with its scrape cache disabled). Prints one JSON line per (store,
endpoint) with p50/p99 in milliseconds, then one line per endpoint with the ratio
large / small (the target: within 2x).

Usage::

    .venv/bin/python benchmarks/serve_scale.py --large 1000000 --small 10000 --repeat 50
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from alray.config import ProjectConfig
from alray.service import metrics
from alray.service.routes.projects import project_public
from alray.service.settings import ServiceSettings
from alray.service.state import ServiceState
from alray.storage import Store
from alray.storage import schema as S

DIM = 8
_BATCH = 200_000


def synthetic_frames(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` frames (ids ``start..start+n``): 80% pool / 10% val / 10% test; pool statuses
    mostly unlabeled with some selected, labeled and failed; a third of the rows scored."""
    ids = np.arange(start, start + n)
    split = rng.choice(np.array(S.SPLITS), n, p=[0.8, 0.1, 0.1])
    status = rng.choice(np.array(S.FRAME_STATUSES), n, p=[0.9, 0.03, 0.06, 0.01])
    score = rng.random(n).astype(np.float32)
    return pa.table({
        "frame_id": pa.array(np.char.mod("%012d", ids)),
        "source_uri": pa.array(np.char.mod("synthetic/%d.png", ids)),
        "source_id": pa.array(np.char.mod("src-%d", ids % 1000)),
        "frame_index": pa.array(ids, pa.int64()),
        "timestamp_ms": pa.nulls(n, pa.int64()),
        "split": pa.array(split),
        "status": pa.array(status),
        "label": pa.array(np.where(status == "labeled", ids % 10, -1), pa.int64()),
        "selected_round": pa.nulls(n, pa.int64()),
        "labeled_round": pa.nulls(n, pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(rng.random(n * DIM, dtype=np.float32)), DIM),
        "score": pa.array(score, mask=ids % 3 != 0),
        "error": pa.nulls(n, pa.string()),
        "image": pa.array([b"\x00" * 8] * n, pa.binary()),
        "height": pa.array(np.full(n, 2, np.int32)),
        "width": pa.array(np.full(n, 4, np.int32)),
        "channels": pa.array(np.ones(n, np.int32)),
    }, schema=S.frames_schema(DIM))


def build_store(uri: str, n: int, *, seed: int = 0) -> Store:
    """A store of ``n`` synthetic frames, indexed as ``alray ingest`` leaves it."""
    store = Store(uri)
    rng = np.random.default_rng(seed)
    table = store._table("frames", S.frames_schema(DIM))
    for start in range(0, n, _BATCH):
        table.add(synthetic_frames(start, min(_BATCH, n - start), rng))
    store.set_meta("classes", [str(i) for i in range(10)])
    store.ensure_key_index("frames", "frame_id")
    store.ensure_status_indices()
    return store


def register(state: ServiceState, name: str, store_uri: str) -> None:
    """Put a project whose store is ``store_uri`` in the service's catalog."""
    cfg = ProjectConfig().with_overrides(**{"name": name, "storage.uri": store_uri,
                                            "pool.uri": str(Path(store_uri).parent)})
    state.catalog.add_project(cfg)


def _p(ms: list[float], q: float) -> float:
    return round(float(np.percentile(ms, q)), 2)


def time_calls(fn, repeat: int) -> dict[str, float]:
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": _p(ms, 50), "p99_ms": _p(ms, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", type=int, default=1_000_000, help="frames of the large store")
    ap.add_argument("--small", type=int, default=10_000, help="frames of the small store")
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per endpoint")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve_scale-") as tmp:
        results: dict[str, dict[str, dict[str, float]]] = {}
        for label, n in (("small", args.small), ("large", args.large)):
            t0 = time.perf_counter()
            state = ServiceState(ServiceSettings(service_root=f"{tmp}/{label}/root",
                                                 data_roots=tmp), [])
            uri = f"{tmp}/{label}/store"
            build_store(uri, n)
            register(state, label, uri)
            built = round(time.perf_counter() - t0, 1)
            p = state.project(label)

            def scrape(state=state):
                metrics._COLLECTOR._at = 0.0  # no scrape cache: every call computes
                metrics.render_metrics(state, per_project=True)

            def get(state=state, p=p):
                project_public(state, p)

            results[label] = {"project_get": time_calls(get, args.repeat),
                              "metrics": time_calls(scrape, args.repeat)}
            for ep, r in results[label].items():
                print(json.dumps({"store": label, "frames": n, "endpoint": ep, **r,
                                  "build_s": built}), flush=True)
        for ep in ("project_get", "metrics"):
            ratio = results["large"][ep]["p99_ms"] / max(results["small"][ep]["p99_ms"], 1e-9)
            print(json.dumps({"endpoint": ep, "p99_ratio_large_over_small": round(ratio, 2),
                              "within_2x": ratio <= 2.0}), flush=True)


if __name__ == "__main__":
    main()
