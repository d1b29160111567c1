"""Two writers on two hosts commit to one LanceDB table on S3 at once: nothing is lost.

Lance commits a version by writing its manifest with ``If-None-Match: *`` (a conditional
put); the loser of a race re-reads, rebases and retries. The S3 server must refuse the second
put, which SeaweedFS does (checked below, before the race).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from alray.storage import Store
from alray.storage import schema as S

pytestmark = pytest.mark.cluster

DIM = 4


def _frames(ids: list[str]) -> pa.Table:
    n = len(ids)
    schema = S.frames_schema(DIM)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols.update(frame_id=pa.array(ids, pa.string()), split=pa.array(["pool"] * n),
                status=pa.array(["unlabeled"] * n))
    return pa.table(cols, schema=schema)


def _writer(uri: str, batches: list[list[str]], label: int | None, start_at: float) -> int:
    """From ``start_at`` on: merge-insert each batch as new frames (``label`` None), or set
    ``label`` on each batch's frames; one commit per batch. Returns the frames inserted."""
    store = Store(uri)
    time.sleep(max(0.0, start_at - time.time()))
    added = 0
    for ids in batches:
        if label is None:
            added += store.add_frames(_frames(ids), DIM)[0]
        else:
            store.update_frames(pa.table({"frame_id": pa.array(ids, pa.string()),
                                          "label": pa.array([label] * len(ids), pa.int64())}))
    return added


def _race(cluster, uri: str, work: dict[str, tuple[list[list[str]], int | None]]) -> list[int]:
    """Run one writer per host, both starting at the same instant."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0.5, max_retries=0)(_writer)
    start_at = time.time() + 3
    return ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        cluster.node_ids[host], soft=False)).remote(uri, batches, label, start_at)
        for host, (batches, label) in work.items()], timeout=300)


def test_seaweedfs_refuses_a_second_conditional_put(cluster):
    c = cluster.s3.client()
    key = f"inm-{time.time_ns()}"
    c.put_object(Bucket="alray-cluster", Key=key, Body=b"1", IfNoneMatch="*")
    with pytest.raises(c.exceptions.ClientError, match="PreconditionFailed"):
        c.put_object(Bucket="alray-cluster", Key=key, Body=b"2", IfNoneMatch="*")
    assert c.get_object(Bucket="alray-cluster", Key=key)["Body"].read() == b"1"


def test_two_hosts_race_on_one_table(healthy, s3_prefix):
    ids = [f"clip:{i:04d}" for i in range(240)]
    store = Store(s3_prefix)
    store.add_frames(_frames(ids[:10]), DIM)  # the table exists before the race
    v0 = store.frames.version

    def cut(xs: list[str]) -> list[list[str]]:
        return [xs[i:i + 20] for i in range(0, len(xs), 20)]

    # Inserts: 80 new frames that both hosts insert, the rest by one host each.
    added = _race(healthy, s3_prefix, {"w1": (cut(ids[:160]), None),
                                       "w2": (cut(ids[80:]), None)})
    # Updates: disjoint label sets, interleaved through the table's rows.
    _race(healthy, s3_prefix, {"w1": (cut(ids[0::2]), 1), "w2": (cut(ids[1::2]), 2)})

    t = Store(s3_prefix).read_frames(["label"])
    got = t["frame_id"].to_pylist()
    assert len(got) == len(set(got)) == len(ids), "a frame was lost or inserted twice"
    assert sum(added) == len(ids) - 10  # each new frame counted once, by the host that won
    labels = np.asarray(t["label"].to_pylist())
    want = np.where(np.arange(len(ids)) % 2 == 0, 1, 2)
    assert np.array_equal(labels, want), f"lost label updates: {int((labels != want).sum())}"
    # one version per batch: no commit was folded into, or overwritten by, another
    assert Store(s3_prefix).frames.version - v0 == 8 + 8 + 6 + 6
