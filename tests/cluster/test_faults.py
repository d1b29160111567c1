"""Faults on the namespace cluster: a worker host killed mid-scoring and mid-ingest, the S3
server restarted mid-ingest. Recovery comes from Ray (actor restarts, task retries, lineage)
and from the store (idempotent ingest, merge-insert by frame_id)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import alray.rounds as rounds_mod
from alray.pipeline.ingest import ingest
from alray.rounds import RoundController
from alray.storage import Store
from tests.cluster.test_distributed_loop import cluster_config

pytestmark = pytest.mark.cluster

POOL = "split = 'pool' AND status != 'failed'"


def _scoring_hosts(cluster) -> list[str]:
    from ray.util.state import list_actors

    rows = list_actors(address=cluster.dashboard_address, raise_on_missing_output=False,
                       filters=[("state", "=", "ALIVE")], limit=1000)
    return [cluster.host_of(a.node_id) for a in rows if "ScoringActor" in (a.class_name or "")]


def test_kill_worker_host_mid_scoring(healthy, s3_prefix, tmp_path, monkeypatch):
    cfg = cluster_config(healthy, s3_prefix, tmp_path, **{
        "pool.limit": 6000, "train.backend": "local", "acquisition.scoring_batch_size": 64,
        "model.mc_samples": 20})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    ctl = RoundController(cfg, store)
    assert ctl.step_round()["state"] == "COMPLETED"  # round 0: seed, label, train

    outputs = []
    real = rounds_mod.score_frames

    def spy(*args, **kwargs):  # the real scoring; keeps what it returned
        outputs.append(real(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(rounds_mod, "score_frames", spy)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(rec=ctl.step_round()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 180
    victim = None
    while victim is None and time.monotonic() < deadline and runner.is_alive():
        hosts = _scoring_hosts(healthy)
        victim = next((h for h in healthy.worker_names if h in hosts), None)
        time.sleep(0.5)
    assert victim, "the scoring actors never came up"
    time.sleep(1.0)  # let batches get under way on the victim
    assert runner.is_alive() and not outputs, "scoring finished before the host was killed"
    t_kill = time.monotonic()
    assert healthy.kill_host(victim) > 0
    detect_s = healthy.wait_dead(victim)
    runner.join(600)
    assert not runner.is_alive(), "the round never finished"
    rec = result["rec"]
    wall_after_kill = time.monotonic() - t_kill
    print(f"\nkilled {victim} mid-scoring: Ray marked it dead after {detect_s:.1f}s; the round "
          f"finished {wall_after_kill:.1f}s after the kill")

    assert rec["round"] == 1 and rec["state"] in ("COMPLETED", "STOPPED"), rec
    assert len(outputs) == 1
    ids = outputs[0].frame_ids.astype(str)
    n_pool = store.count_frames(POOL)
    assert len(ids) == len(np.unique(ids)) == n_pool  # every pool frame scored exactly once
    table_ids = store.read_frames([])["frame_id"].to_pylist()
    assert len(table_ids) == len(set(table_ids))  # no duplicate rows
    assert store.count_frames(f"{POOL} AND score IS NULL") == 0
    assert store.count_frames("selected_round = 1") == cfg.acquisition.batch_size
    assert victim not in _scoring_hosts(healthy)


def test_kill_worker_host_mid_ingest_rerun_adds_the_rest(healthy, s3_prefix, tmp_path):
    """w1 dies after the first written batch; the driver goes on, then is itself interrupted
    after the fourth: the store holds what was written, and a re-run (w1 still down) adds
    exactly the frames that are missing."""
    cfg = cluster_config(healthy, s3_prefix, tmp_path, **{
        "pool.limit": 10000, "pool.batch_frames": 250})
    batches: list[int] = []

    class Interrupted(Exception):
        pass

    def kill_then_interrupt(summary) -> None:
        batches.append(summary.frames_added)
        if len(batches) == 1:
            healthy.kill_host("w1")
        if len(batches) == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        ingest(cfg, Store(cfg.storage.uri), on_batch=kill_then_interrupt)
    before = Store(cfg.storage.uri).count_frames()
    assert before == batches[-1] == 4 * 1000  # 4 writes of 4 x pool.batch_frames
    again = ingest(cfg, Store(cfg.storage.uri))
    print(f"\ningest: w1 killed after the 1st batch, driver interrupted after the 4th with "
          f"{before} frames stored; the re-run added {again.frames_added} in {again.seconds:.1f}s")
    assert (again.frames_added, again.frames_present) == (10000 - before, before)
    ids = Store(cfg.storage.uri).read_frames([])["frame_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 10000


def test_s3_restart_mid_ingest(healthy, s3_prefix, tmp_path):
    cfg = cluster_config(healthy, s3_prefix, tmp_path, **{
        "pool.limit": 10000, "pool.batch_frames": 500})
    store = Store(cfg.storage.uri)
    down: list[float] = []

    def restart() -> None:
        t0 = time.monotonic()
        healthy.s3.restart(down_s=3)  # the driver keeps committing while it is down
        down.append(time.monotonic() - t0)

    outage = threading.Thread(target=restart, daemon=True)

    def restart_once(summary) -> None:
        if not outage.is_alive() and not down:
            outage.start()

    s = ingest(cfg, store, on_batch=restart_once)
    outage.join(120)
    assert down, "the S3 server was not restarted"
    print(f"\nS3 server down {down[0]:.1f}s mid-ingest; the ingest added {s.frames_added} "
          f"frames in {s.seconds:.1f}s")
    assert s.frames_added == 10000 and s.failed == 0
    ids = Store(cfg.storage.uri).read_frames([])["frame_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 10000
