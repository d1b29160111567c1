"""The namespace cluster, once per test session (``make test-cluster``).

The fixture fails (never skips) when the cluster cannot be built: no root, no iproute2, no
``weed`` binary. ``ALRAY_CLUSTER_KEEP=1`` keeps the logs folder of a failed run
(``/tmp/alc<run>-*``).
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.harness import Cluster

BUCKET = "alray-cluster"


@pytest.fixture(scope="session")
def cluster():
    """S3 + Ray head + two worker hosts + the driver host, this process joined as the driver;
    every ``AWS_*`` variable of this process points at the cluster's S3 server."""
    c = Cluster(workers=2, cpus=2)
    with pytest.MonkeyPatch.context() as mp:
        try:
            c.start()
            for k, v in c.env().items():
                mp.setenv(k, v)
            mp.setenv("ALRAY_PROGRESS", "0")
            c.connect()
            c.s3.upload(BUCKET, {})
            yield c
        finally:
            c.stop()


@pytest.fixture(autouse=True)
def _ship_test_module(request):
    """Remote functions defined in a test module travel by value (workers cannot import a
    module that pytest imported by its file path)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)
    yield


@pytest.fixture()
def healthy(cluster):
    """The cluster with every host alive (a host killed by an earlier test is restarted)."""
    import ray

    dead = [n for n, i in cluster.node_ids.items()
            if not any(x["NodeID"] == i and x["Alive"] for x in ray.nodes())]
    for name in dead:
        cluster.restart_host(name)
    if dead:
        cluster.wait_alive(dead)
    return cluster


@pytest.fixture()
def s3_prefix(request) -> str:
    """A fresh ``s3://`` prefix for one test's store."""
    return f"s3://{BUCKET}/{request.node.name}-{int(time.time() * 1000)}"
