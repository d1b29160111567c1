"""The whole loop on the namespace cluster, with the pool and the store on its S3 server.

Ingest decodes on the worker hosts, scoring actors run there, Ray Train runs one worker per
host (DDP over gloo between namespaces), and every byte the loop keeps (frames, embeddings,
rounds, checkpoints) is on S3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alray.runner import run_project
from tests.cluster.conftest import BUCKET
from tests.conftest import MNIST, small_config

pytestmark = pytest.mark.cluster


def _pool_on_s3(cluster, prefix: str) -> str:
    key = prefix.removeprefix(f"s3://{BUCKET}/") + "/pool"
    cluster.s3.upload(BUCKET, {f"{key}/{f.name}": f for f in MNIST.glob("*.gz")})
    return f"s3://{BUCKET}/{key}"


def cluster_config(cluster, prefix: str, tmp_path: Path, **overrides):
    """The suite's small MNIST config with pool and store on the cluster's S3."""
    return small_config(tmp_path, **{
        "pool.uri": _pool_on_s3(cluster, prefix), "pool.limit": 1000,
        "storage.uri": f"{prefix}/store", "ray.address": cluster.head_address,
        "acquisition.scoring_actors": 2, "acquisition.scoring_batch_size": 128,
        "train.max_epochs": 2, "loop.max_rounds": 1, **overrides})


def _nodes(cluster, names: list[str], rows: list) -> dict[str, set[str]]:
    """Host names each matching task/actor ran on, by the name it matched (an actor that was
    never placed, e.g. a pool's spare one on a busy cluster, has no node and is skipped)."""
    out: dict[str, set[str]] = {n: set() for n in names}
    for r in rows:
        if not r.node_id:
            continue
        for n in names:
            if n in (getattr(r, "name", "") or "") or n in (getattr(r, "class_name", "") or ""):
                out[n].add(cluster.host_of(r.node_id) or r.node_id)
    return out


def test_loop_on_s3_spread_over_hosts(healthy, s3_prefix, tmp_path):
    from ray.util.state import list_actors, list_tasks

    cfg = cluster_config(healthy, s3_prefix, tmp_path, **{
        "train.backend": "ray", "train.workers": 2, "train.placement_strategy": "STRICT_SPREAD"})
    store, reason = run_project(cfg)

    assert reason == "max_rounds"
    rounds = store.rounds()
    assert [(r["round"], r["state"]) for r in rounds] == [(0, "COMPLETED"), (1, "STOPPED")]
    for r in rounds:  # a model per round, trained by two ranks, saved on S3
        assert r["metrics"]["world_size"] == 2
        assert r["checkpoint_uri"].startswith(f"{cfg.storage.uri}/checkpoints/")
        key = r["checkpoint_uri"].removeprefix(f"s3://{BUCKET}/") + "/model.pt"
        assert healthy.s3.client().head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    # Round 1 scored the whole pool: every decodable pool frame has its embedding on S3.
    assert store.count_frames("split = 'pool' AND status != 'failed' AND embedding IS NULL") == 0
    assert store.count_frames("score IS NOT NULL") == store.count_frames(
        "split = 'pool' AND status != 'failed'")
    keys = [o["Key"] for o in healthy.s3.client().list_objects_v2(
        Bucket=BUCKET, Prefix=cfg.storage.uri.removeprefix(f"s3://{BUCKET}/"))["Contents"]]
    assert any("/frames.lance/_versions/" in k for k in keys)
    assert not Path("s3:").exists() and not (tmp_path / "store").exists()  # nothing local

    tasks = list_tasks(address=healthy.dashboard_address, limit=10_000, raise_on_missing_output=False,
                       filters=[("type", "=", "NORMAL_TASK")])
    actors = list_actors(address=healthy.dashboard_address, limit=10_000,
                         raise_on_missing_output=False)
    ran = _nodes(healthy, ["decode_work_items", "ScoringActor", "RayTrainWorker"],
                 [*tasks, *actors])
    workers = set(healthy.worker_names)
    assert ran["decode_work_items"] and ran["decode_work_items"] <= workers, ran
    assert ran["ScoringActor"] and ran["ScoringActor"] <= workers, ran
    assert ran["RayTrainWorker"] == workers, ran  # one rank on each worker host
