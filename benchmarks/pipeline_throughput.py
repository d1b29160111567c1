"""End-to-end pool throughput: object store → decode → embed + MC score → LanceDB.

Prints one JSON object per line on stdout (logs on stderr), each with a ratio against a
baseline measured in the same run:

- ``bare_forward``: the model alone (backbone once + T-sample MC head) on the same frames
  already in memory, all cores: the baseline.
- ``end_to_end``: synthetic H.264 dashcam-like videos in a real S3-compatible server on
  loopback (SeaweedFS) → PyAV decode in Ray Data tasks → embed + MC score in an actor pool →
  merge into LanceDB in batches; ``ratio_vs_bare_forward`` (target ≥ 0.8).
- ``decode_write_only``: the same pipeline without the model (the decode/write share).
- ``peak_memory``: peak RSS (driver + Ray processes) ingesting the large pool vs the small
  one (target: within 20%).
- ``reingest``: re-ingesting the small pool adds nothing (zero duplicates).
- ``rescore_cached``: a round's re-scoring from stored embeddings (head only, frozen backbone)
  vs re-embedding the pixels (target ≥ 50× faster).

Usage::

    .venv/bin/python benchmarks/pipeline_throughput.py            # 10,000 and 100,000 frames
    .venv/bin/python benchmarks/pipeline_throughput.py --quick    # 2,000 and 10,000 frames
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench")


def _emit(**rec) -> None:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    print(json.dumps({"bench": "pipeline_throughput", **rec, "device": "cpu",
                      "cpus": os.cpu_count(), "git_sha": sha}), flush=True)


def make_videos(folder: Path, n_videos: int, frames: int, side: int = 64, seed: int = 0) -> None:
    """Synthetic dashcam-like H.264 clips: a drifting textured scene with a cut every 250
    frames and sensor noise, so consecutive frames are near-duplicates but scenes differ."""
    import av

    rng = np.random.default_rng(seed)
    for v in range(n_videos):
        with av.open(str(folder / f"drive-{v:03d}.mp4"), "w") as out:
            stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
            for s in range(0, frames, 250):  # one scene per 250 frames
                scene = rng.integers(0, 255, (side * 2, side * 2, 3), dtype=np.uint8)
                n = min(250, frames - s)
                for t in range(n):  # encoding is per frame by nature
                    img = scene[t % side: t % side + side, :side]
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)


class PeakRSS:
    """Samples the summed RSS of this process and its descendants (Ray's workers)."""

    def __init__(self, every: float = 0.1):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()

    def _total(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(Exception):  # a worker exited between listing and reading
                total += p.memory_info().rss
        return total

    def __enter__(self) -> PeakRSS:
        self.peak = self._total()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._total())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def bare_forward(model, images: list[bytes], side: int, batch: int, samples: int) -> float:
    """Seconds for backbone + MC head over in-memory frames (all cores)."""
    import torch

    from alray import acquisition
    from alray.models.tensors import images_to_tensor

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(images), batch):  # batches of frames
            x = images_to_tensor(images[s: s + batch], side, side, 3)
            acquisition.score("bald", model.head(model.features(x), samples))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 10,000 frames")
    ap.add_argument("--frames", type=int, help="large pool size (default 100,000)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    small, large = (2_000, 10_000) if args.quick else (10_000, args.frames or 100_000)
    per_video = 1_000 if args.quick else 10_000

    import torch

    from alray.config import ProjectConfig, RayConfig
    from alray.models import build_model
    from alray.pipeline.ingest import ingest
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.pipeline.score import score_pool
    from alray.pipeline.train import _save
    from alray.sources.video import decode_video, video_task
    from alray.storage import Store
    from tests.s3server import start_s3_server

    work = Path(tempfile.mkdtemp(prefix="alray-bench-"))
    server = start_s3_server()
    os.environ.update(server.env)
    try:
        for name, n in (("small", small), ("large", large)):
            d = work / name
            d.mkdir()
            t0 = time.perf_counter()
            make_videos(d, max(1, n // per_video), min(n, per_video), seed=len(name))
            server.upload("pool", {f"{name}/{p.name}": p for p in sorted(d.glob("*.mp4"))})
            log.info("%s pool: %d frames generated and uploaded in %.1fs", name, n,
                     time.perf_counter() - t0)
        ensure_ray(RayConfig())
        base = ProjectConfig().with_overrides(**{
            "pool.format": "video", "pool.val_fraction": 0.0, "pool.test_fraction": 0.0,
            "pool.batch_frames": 1024, "model.input_size": 32, "model.in_channels": 3,
            "model.embedding_dim": 128, "model.mc_samples": 20, "model.num_classes": 10,
            "model.dropout_p": 0.5, "acquisition.scoring_batch_size": 512,
            "acquisition.scoring_actors": max(1, (os.cpu_count() or 2)),
            "acquisition.actor_cpus": 0.5})
        torch.manual_seed(0)
        model = build_model(base.model, 10).eval()
        ckpt = str(work / "ckpt")
        _save(model.state_dict(), 10, ckpt)

        # Baseline: the model alone on the large pool's frames, already in memory.
        images = []
        for p in sorted((work / "large").glob("*.mp4")):
            for b in decode_video({**video_task(str(p), p.name), "batch_frames": 8192},
                                  input_size=32, channels=3):
                images += list(b["image"])
        bare = bare_forward(model, images, 32, 512, base.model.mc_samples)
        bare_fps = len(images) / bare
        del images
        _emit(metric="bare_forward", n=large, seconds=round(bare, 2),
              frames_per_s=round(bare_fps, 1), ratio=1.0, baseline="itself")

        peaks, stores = {}, {}
        for name in ("small", "large"):
            cfg = base.with_overrides(**{"pool.uri": f"s3://pool/{name}",
                                         "storage.uri": str(work / f"store-{name}")})
            store = Store(cfg.storage.uri)
            with PeakRSS() as mem:
                s = ingest(cfg, store, checkpoint_uri=ckpt)
            peaks[name], stores[name] = mem.peak, (cfg, store)
            fps = s.frames_added / s.seconds
            if name == "large":
                _emit(metric="end_to_end", n=s.frames_added, seconds=round(s.seconds, 2),
                      frames_per_s=round(fps, 1), ratio_vs_bare_forward=round(fps / bare_fps, 3),
                      target=0.8, ok=fps / bare_fps >= 0.8, stage_seconds=s.stage_seconds,
                      failed=s.failed)
        _emit(metric="peak_memory", n=large, peak_rss_mb=round(peaks["large"] / 2**20),
              baseline_n=small, baseline_peak_rss_mb=round(peaks["small"] / 2**20),
              ratio=round(peaks["large"] / peaks["small"], 3), target=1.2,
              ok=peaks["large"] / peaks["small"] <= 1.2)

        cfg, store = stores["small"]
        again = ingest(cfg, store, checkpoint_uri=ckpt)
        ids = store.read_frames([])["frame_id"].to_pylist()
        _emit(metric="reingest", n=small, frames_added=again.frames_added,
              frames_present=again.frames_present, duplicates=len(ids) - len(set(ids)),
              ratio=round(again.frames_present / small, 3), ok=again.frames_added == 0
              and len(ids) == len(set(ids)))
        plain = base.with_overrides(**{"pool.uri": "s3://pool/small",
                                       "storage.uri": str(work / "store-plain")})
        s = ingest(plain, Store(plain.storage.uri))
        _emit(metric="decode_write_only", n=s.frames_added, seconds=round(s.seconds, 2),
              frames_per_s=round(s.frames_added / s.seconds, 1),
              ratio_vs_bare_forward=round(s.frames_added / s.seconds / bare_fps, 3),
              stage_seconds=s.stage_seconds)

        cfg, store = stores["large"]
        frozen = cfg.with_overrides(**{"model.freeze_backbone": True})
        t0 = time.perf_counter()
        cold = score_pool(frozen, store, ckpt, seed=1, want_probs=False)  # fills the cache
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = score_pool(frozen, store, ckpt, seed=2, want_probs=False)
        cached_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh = score_pool(cfg, store, ckpt, seed=2, want_probs=False)  # trainable: re-embeds
        fresh_s = time.perf_counter() - t0
        same = bool(np.allclose(cached.embeddings, fresh.embeddings, rtol=1e-4, atol=1e-5))
        _emit(metric="rescore_cached", n=len(cached.frame_ids), seconds=round(cached_s, 3),
              reembed_seconds=round(fresh_s, 2), first_cache_fill_seconds=round(cold_s, 2),
              cache_refilled=int(cold.timing.get("embedded", 0)),
              speedup_vs_reembed=round(fresh_s / cached_s, 1), target=50,
              ok=fresh_s / cached_s >= 50, embeddings_match=same)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
