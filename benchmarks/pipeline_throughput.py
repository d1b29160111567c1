"""End-to-end pool throughput: object store → decode → embed + MC score → LanceDB.

Prints one JSON object per line on stdout (logs on stderr), each with a ratio against a
baseline measured in the same run:

- ``bare_forward``: the model alone (backbone once + T-sample MC head) on the same frames
  already in memory, all cores, at its fastest batch size: the baseline.
- ``end_to_end``: synthetic H.264 dashcam-like videos in a real S3-compatible server on
  loopback (SeaweedFS) → PyAV decode in Ray Data tasks → embed + MC score in an actor pool →
  merge into LanceDB in batches; ``ratio_vs_bare_forward`` over the wall time (start-up
  included) and ``steady_ratio_vs_bare_forward`` once running (target ≥ 0.8), with the start-up
  seconds and the CPU seconds each role used (decode, embed_score, driver_write, ray_other).
- ``decode_write_only``: the same pipeline without the model (the decode/write share).
- ``peak_memory``: peak summed PSS of the driver and Ray's processes ingesting the large pool
  vs the small one (target: within 20%), per role, each in a run of its own (sampling PSS
  costs CPU); alongside, summed RSS (it counts shared object-store pages once per process
  that touched them) and the total with the loopback S3
  server (an external store in production, whose cache grows with the bytes it holds).
- ``reingest``: re-ingesting the small pool adds nothing (zero duplicates).
- ``rescore_cached``: a round's re-scoring from stored embeddings (head only, frozen backbone)
  vs re-embedding the pixels (target ≥ 50× faster).

Usage::

    .venv/bin/python benchmarks/pipeline_throughput.py            # 10,000 and 100,000 frames
    .venv/bin/python benchmarks/pipeline_throughput.py --quick    # 2,000 and 10,000 frames
    .venv/bin/python benchmarks/pipeline_throughput.py --architecture resnet18 --input-size 64
    .venv/bin/python benchmarks/pipeline_throughput.py --inflight-mb 256   # pool.inflight_mb
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
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


class PeakMemory:
    """Samples the memory of this process and its descendants (Ray's workers, the S3 server)
    and each process's CPU time by pipeline role (Ray sets a worker's title to what it runs).

    ``peak`` is the summed PSS (proportional set size): a page shared by several processes
    (the Ray object store's shared memory, torch's libraries mapped by every worker) counts
    once, split between them. Summed RSS counts such a page in every process that touched
    it, so it grows with how many object-store pages the workers have touched over a run,
    not with what they hold; ``peak_rss`` reports it for comparison.

    ``peak`` and ``peak_rss`` leave out the S3 server: it stands for an external object store
    and its cache grows with the bytes stored in it (170 MB at 10,000 frames, 440 MB at
    300,000); ``peak_with_s3_server`` includes it.

    Reading PSS walks each process's page tables: about 140 ms of the driver's CPU per
    sample with 6 GB resident, which slowed a 2-core run by a fifth. The throughput run
    therefore samples CPU times only (``memory=False``); memory is measured in runs of its own.
    """

    def __init__(self, every: float = 1.0, memory: bool = True):
        import psutil

        self.proc, self.every, self.peak, self.peak_rss = psutil.Process(), every, 0, 0
        self.memory = memory  # False: CPU times only (reading PSS costs the driver CPU)
        self.peak_with_s3_server = 0
        self.peak_by_role: dict[str, int] = {}  # MiB per role at the peak
        self._stop = threading.Event()
        self._role: dict[int, str] = {}
        self._cpu: dict[int, float] = {}
        self._cpu0: dict[int, float] = {}

    @staticmethod
    def _role_of(title: str) -> str | None:
        if "weed" in title.split(" ")[0]:
            return "s3_server"
        if "EmbedActor" in title or "ScoringActor" in title:
            return "embed_score"
        if "decode_work_items" in title or "_map_task" in title:
            return "decode"
        return None if "IDLE" in title else "ray_other"

    def _total(self) -> int:
        total, total_rss, by_role = 0, 0, {}
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(Exception):  # a worker exited between listing and reading
                m = p.memory_full_info() if self.memory else None
                t = p.cpu_times()
                cpu = t.user + t.system
                self._cpu0.setdefault(p.pid, cpu)
                self._cpu[p.pid] = cpu
                if p.pid == self.proc.pid:
                    self._role[p.pid] = "driver_write"
                elif self._role.get(p.pid) in (None, "ray_other"):
                    role = self._role_of(" ".join(p.cmdline()))
                    if role:
                        self._role[p.pid] = role
                role = self._role.get(p.pid, "ray_other")
                if m is None:
                    continue
                by_role[role] = by_role.get(role, 0) + m.pss
                if role != "s3_server":
                    total += m.pss
                    total_rss += m.rss
        self.peak_rss = max(self.peak_rss, total_rss)
        self.peak_with_s3_server = max(self.peak_with_s3_server, sum(by_role.values()))
        if total > self.peak:
            self.peak_by_role = {k: round(v / 2**20) for k, v in sorted(by_role.items())}
        return total

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used during the block, per role (decode, embed_score, driver_write,
        ray_other: raylet, GCS, Ray Data's bookkeeping actors)."""
        out: dict[str, float] = {}
        for pid, cpu in self._cpu.items():
            role = self._role.get(pid, "ray_other")
            out[role] = out.get(role, 0.0) + cpu - self._cpu0[pid]
        return {k: round(v, 1) for k, v in sorted(out.items())}

    def __enter__(self) -> PeakMemory:
        self.peak = 0
        self.peak = self._total()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._total())  # _total reads the old peak first

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._total())


def bare_forward(model, images: list[bytes], side: int, batch: int, samples: int) -> float:
    """Seconds for backbone + MC head over in-memory frames (all cores)."""
    import torch

    from alray import acquisition
    from alray.models import draw_masks, head_probs
    from alray.models.tensors import images_to_tensor

    torch.set_num_threads(os.cpu_count() or 1)
    masks = draw_masks(model, samples, 0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(images), batch):  # batches of frames
            x = images_to_tensor(images[s: s + batch], side, side, 3)
            acquisition.score("bald", head_probs(model, model.features(x), masks))
    return time.perf_counter() - t0


def best_batch(model, images: list[bytes], side: int, samples: int,
               candidates: tuple[int, ...] = (64, 128, 256, 512)) -> int:
    """The batch size at which :func:`bare_forward` runs fastest on a sample of the frames,
    so the baseline is the model at its best on this machine, not at an arbitrary size."""
    sample = images[: 4 * max(candidates)]
    bare_forward(model, sample[: max(candidates)], side, max(candidates), samples)  # warm up
    return min(candidates, key=lambda b: bare_forward(model, sample, side, b, samples))


def steady_rate(progress: list[tuple[float, int]]) -> float:
    """Frames/s once running: the least-squares slope of frames done over time for the
    second half of the frames. Leaves out the start-up (worker processes starting, models
    loading) and the burst of batches Ray Data buffered while the driver waited for the first.
    """
    t, n = np.asarray(progress, dtype=np.float64).T
    late = n >= n[-1] / 2
    if late.sum() < 3:
        return float("nan")
    return float(np.polyfit(t[late], n[late], 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 10,000 frames")
    ap.add_argument("--frames", type=int, help="large pool size (default 100,000)")
    ap.add_argument("--architecture", default="mnist_cnn",
                    help="model.architecture (e.g. resnet18: a backbone heavier than decode)")
    ap.add_argument("--input-size", type=int, default=32, help="model.input_size")
    ap.add_argument("--inflight-mb", type=int,
                    help="pool.inflight_mb (default: alray's, sized from the decoded batch)")
    ap.add_argument("--no-rescore", action="store_true",
                    help="skip the re-scoring comparison (two more passes over the large pool)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    small, large = (2_000, 10_000) if args.quick else (10_000, args.frames or 100_000)
    per_video = 1_000 if args.quick else 10_000

    import torch

    from alray.config import ProjectConfig, RayConfig
    from alray.models import build_model, save_checkpoint
    from alray.pipeline.ingest import ingest
    from alray.pipeline.ray_runtime import ensure_ray, inflight_bytes
    from alray.pipeline.score import score_frames
    from alray.sources.video import decode_video, video_task
    from alray.storage import Store
    from tests.s3server import start_s3_server

    work = Path(tempfile.mkdtemp(prefix="alray-bench-"))
    server = start_s3_server()
    os.environ.update(server.env)
    try:
        # Both pools have as many videos, so both run as many decode tasks at once: peak
        # memory follows the tasks in flight (bounded by the cores), and a one-video small
        # pool would understate its baseline (one decode process instead of two on 2 cores).
        videos = max(1, large // per_video)
        for name, n in (("small", small), ("large", large)):
            d = work / name
            d.mkdir()
            t0 = time.perf_counter()
            make_videos(d, videos, max(1, n // videos), seed=len(name))
            server.upload("pool", {f"{name}/{p.name}": p for p in sorted(d.glob("*.mp4"))})
            log.info("%s pool: %d frames generated and uploaded in %.1fs", name, n,
                     time.perf_counter() - t0)
        ensure_ray(RayConfig())
        base = ProjectConfig().with_overrides(**{
            "pool.format": "video", "pool.val_fraction": 0.0, "pool.test_fraction": 0.0,
            "pool.batch_frames": 1024, "model.input_size": args.input_size, "model.in_channels": 3,
            "model.architecture": args.architecture,
            "model.embedding_dim": 128, "model.mc_samples": 20, "model.num_classes": 10,
            "model.dropout_p": 0.5, "acquisition.scoring_batch_size": 512,
            "acquisition.scoring_actors": max(1, (os.cpu_count() or 2)),
            "acquisition.actor_cpus": 0.5, "pool.inflight_mb": args.inflight_mb})
        torch.manual_seed(0)
        model = build_model(base.model, 10).eval()
        ckpt = str(work / "ckpt")
        save_checkpoint(model.state_dict(), 10, ckpt)

        # Baseline: the model alone on the large pool's frames, already in memory.
        images = []
        for p in sorted((work / "large").glob("*.mp4")):
            for b in decode_video({**video_task(str(p), p.name), "batch_frames": 8192},
                                  input_size=args.input_size, channels=3):
                images += list(b["image"])
        batch = best_batch(model, images, args.input_size, base.model.mc_samples)
        bare = bare_forward(model, images, args.input_size, batch, base.model.mc_samples)
        bare_fps = len(images) / bare
        del images
        _emit(metric="bare_forward", n=large, architecture=args.architecture,
              inflight_mb=inflight_bytes(base) >> 20,
              input_size=args.input_size, batch=batch, seconds=round(bare, 2),
              frames_per_s=round(bare_fps, 1), ratio=1.0, baseline="itself")

        peaks, peaks_rss, peaks_s3, stores, by_role = {}, {}, {}, {}, {}
        # Each pool with memory sampling, and the large one again for throughput without it,
        # after the small run has started Ray's worker processes (as in a long-lived service).
        for run, name in (("memory", "small"), ("throughput", "large"), ("memory", "large")):
            cfg = base.with_overrides(**{"pool.uri": f"s3://pool/{name}",
                                         "storage.uri": str(work / f"store-{run}-{name}")})
            store = Store(cfg.storage.uri)
            progress: list[tuple[float, int]] = []  # (seconds, frames done) per written batch
            with PeakMemory(memory=run == "memory") as mem:
                s = ingest(cfg, store, checkpoint_uri=ckpt, on_batch=lambda x, log=progress: log.append(
                    (x.seconds, x.frames_added + x.frames_present)))
            fps = s.frames_added / s.seconds
            startup, steady = s.stage_seconds["startup"], steady_rate(progress)
            if run == "memory":
                peaks[name], stores[name] = mem.peak, (cfg, store)
                peaks_rss[name] = mem.peak_rss
                peaks_s3[name] = mem.peak_with_s3_server
                by_role[name] = mem.peak_by_role
                log.info("%s pool with memory sampling: %.0f frames/s", name, fps)
            else:
                _emit(metric="end_to_end", n=s.frames_added, architecture=args.architecture,
                      seconds=round(s.seconds, 2), frames_per_s=round(fps, 1),
                      ratio_vs_bare_forward=round(fps / bare_fps, 3),
                      startup_seconds=startup, steady_frames_per_s=round(steady, 1),
                      steady_ratio_vs_bare_forward=round(steady / bare_fps, 3), target=0.8,
                      ok_steady=steady / bare_fps >= 0.8, ok_wall=fps / bare_fps >= 0.8,
                      stage_seconds=s.stage_seconds, cpu_seconds=mem.cpu_seconds(),
                      cpu_capacity_seconds=round(s.seconds * (os.cpu_count() or 1), 1),
                      failed=s.failed)
        _emit(metric="peak_memory", n=large, peak_pss_mb=round(peaks["large"] / 2**20),
              baseline_n=small, baseline_peak_pss_mb=round(peaks["small"] / 2**20),
              ratio=round(peaks["large"] / peaks["small"], 3), target=1.2,
              ok=peaks["large"] / peaks["small"] <= 1.2, peak_pss_mb_by_role=by_role,
              summed_rss_mb={k: round(v / 2**20) for k, v in peaks_rss.items()},
              summed_rss_ratio=round(peaks_rss["large"] / peaks_rss["small"], 3),
              with_s3_server_mb={k: round(v / 2**20) for k, v in peaks_s3.items()},
              with_s3_server_ratio=round(peaks_s3["large"] / peaks_s3["small"], 3))

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

        if args.no_rescore:
            return
        cfg, store = stores["large"]
        frozen = cfg.with_overrides(**{"model.freeze_backbone": True})
        t0 = time.perf_counter()
        cold = score_frames(frozen, store, ckpt, seed=1, want_probs=False)  # fills the cache
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = score_frames(frozen, store, ckpt, seed=2, want_probs=False)
        cached_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh = score_frames(cfg, store, ckpt, seed=2, want_probs=False)  # trainable: re-embeds
        fresh_s = time.perf_counter() - t0
        same = bool(np.allclose(cached.embeddings, fresh.embeddings, rtol=1e-4, atol=1e-5))
        _emit(metric="rescore_cached", n=len(cached.frame_ids), seconds=round(cached_s, 3),
              reembed_seconds=round(fresh_s, 2), first_cache_fill_seconds=round(cold_s, 2),
              cache_refilled=int(cold.timing.get("embedded", 0)),
              speedup_vs_reembed=round(fresh_s / cached_s, 1), target=50,
              ok=fresh_s / cached_s >= 50, embeddings_match=same)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the videos and stores: hundreds of MB


if __name__ == "__main__":
    main()
