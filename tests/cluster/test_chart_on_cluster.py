"""The Helm chart's application, run on the namespace cluster as KubeRay would run it.

The chart is rendered (``deploy/values-minimal.yaml`` plus this cluster's S3 endpoint, a GPU
group and a chart-made Secret with fresh tokens); each Ray host starts with its group's
``ray start`` flags and pod environment from that one render (the GPU group's GPUs as the
``gpu_host`` stand-in resource, ``HOME`` on a per-host folder as the pod's emptyDir). The
rendered ``serveConfigV2`` goes to the head's dashboard (``PUT /api/serve/applications/``, as
the KubeRay operator deploys it), the chart's register script creates the project from the
rendered ConfigMap, and a labeling cycle runs over HTTP with the rendered Secret's tokens.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from alray.service.catalog import ConsistentStore
from tests.cluster.harness import Cluster
from tests.conftest import MNIST
from tests.helm.chart import EXAMPLES, Rendered, template

#: Starting three Ray hosts and Serve on 2 cores takes minutes; the suite-wide 600 s is too short.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

BUCKET = "alray-chart"
PROJECT = "mnist"
#: What the cluster does not take from the chart: the ports and addresses the harness assigns
#: per namespace (the chart's are for a pod network).
SKIP = ("dashboard-host", "metrics-export-port")
#: Chart group -> harness host.
HOSTS = {"head": "head", "cpu": "w1", "gpu": "w2"}


def render(s3_env: dict[str, str], tokens: str) -> Rendered:
    """The minimal example on this cluster's S3, one CPU and one GPU worker, a tiny project."""
    return template(EXAMPLES["minimal"], {
        "s3.endpointUrl": s3_env["AWS_ENDPOINT_URL"],
        "alray.serviceRoot": f"s3://{BUCKET}/service",
        "alray.dataRoots": [f"s3://{BUCKET}/pools/"],
        "alray.projects": {PROJECT: {
            "pool": {"uri": f"s3://{BUCKET}/pools/mnist-t10k/", "format": "idx", "limit": 300,
                     "val_fraction": 0.1, "test_fraction": 0.2},
            "model": {"architecture": "mnist_cnn", "input_size": 28, "in_channels": 1,
                      "mc_samples": 2},
            "train": {"backend": "local", "max_epochs": 1, "epoch_samples": 128},
            "acquisition": {"strategy": "random", "batch_size": 10},
            "loop": {"initial_labels": 20}}},
        "gpuWorkers": {"enabled": True, "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                       "gpus": 1, "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                                                "limits": {"cpu": "1", "memory": "2Gi"}}},
        "secrets.existingSecret": "", "secrets.apiTokens": tokens,
        "secrets.awsAccessKeyId": s3_env["AWS_ACCESS_KEY_ID"],
        "secrets.awsSecretAccessKey": s3_env["AWS_SECRET_ACCESS_KEY"]})


@pytest.fixture(scope="module")
def chart_cluster():
    """The cluster started from one render; yields (cluster, rendered). No driver host: the
    test reaches the cluster only over HTTP (Serve, the dashboard), as clients of a RayService
    do."""
    tokens = f"admin:{secrets.token_hex(8)},label:{secrets.token_hex(8)}"
    out: dict[str, Rendered] = {}

    def configure(c: Cluster) -> None:
        c.s3.upload(BUCKET, {f"pools/mnist-t10k/{f.name}": f for f in MNIST.glob("*.gz")})
        r = out["r"] = render(c.s3.env, tokens)
        for g in r.groups():
            host = HOSTS[g.name]
            home = Path(c.workdir) / f"{host}-home"  # the pod's /home/ray emptyDir
            home.mkdir()
            c.host_args[host] = g.ray_start_args(gpu_stand_in="gpu_host", skip=SKIP)
            c.host_env[host] = {**g.env, "HOME": str(home)}

    c = Cluster(workers=2, driver=False, configure=configure)
    try:
        c.start()
        yield c, out["r"]
    finally:
        c.stop()


def _deploy(cluster: Cluster, serve_config: dict) -> None:
    """PUT the Serve config on the head's dashboard (KubeRay's call), retried while the
    dashboard's Serve module comes up."""
    deadline = time.monotonic() + 120
    while True:
        try:
            r = httpx.put(f"{cluster.dashboard_address}/api/serve/applications/",
                          json=serve_config, timeout=60)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:500]}"
        except httpx.HTTPError as err:
            last = repr(err)
        if time.monotonic() > deadline:
            raise AssertionError(f"serveConfigV2 not accepted by the dashboard: {last}")
        time.sleep(2)


def _ready_url(cluster: Cluster, port: int, timeout: float = 600) -> str:
    """The first host whose Serve ingress answers /readyz 200 (KubeRay's serve Service sends
    traffic to such pods)."""
    urls = [f"http://{cluster.net.hosts[h].ip}:{port}" for h in HOSTS.values()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for url in urls:
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        status = httpx.get(f"{cluster.dashboard_address}/api/serve/applications/", timeout=30)
        app = status.json().get("applications", {}).get("alray", {})
        assert app.get("status") != "DEPLOY_FAILED", app.get("message")
        time.sleep(2)
    raise AssertionError(f"no Serve ingress ready on {urls} after {timeout}s")


def _wait_job(http: httpx.Client, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")


def _selection(http: httpx.Client, n: int) -> list[str]:
    page = http.get(f"/v1/projects/{PROJECT}/rounds/{n}/selection",
                    params={"format": "jsonl", "limit": 1000})
    assert page.status_code == 200, page.text
    return [httpx.Response(200, content=x).json()["frame_id"] for x in page.text.splitlines()]


def _label(http: httpx.Client, store: ConsistentStore, ids: list[str], n: int) -> dict:
    gt = store.ground_truth(ids)
    body = {"labels": [{"frame_id": f, "label": gt[f], "idempotency_key": f"r{n}:{f}"}
                       for f in ids]}
    r = http.post(f"/v1/projects/{PROJECT}/labels", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _placement(cluster: Cluster) -> dict[str, set[str]]:
    """Alive actor class -> host names it runs on (Ray's state API on the head)."""
    from ray.util.state import list_actors, list_nodes

    addr = cluster.dashboard_address
    by_ip = {h.ip: name for name, h in cluster.net.hosts.items()}
    hosts = {n.node_id: by_ip.get(n.node_ip, n.node_ip)
             for n in list_nodes(address=addr, raise_on_missing_output=False)}
    out: dict[str, set[str]] = {}
    for a in list_actors(address=addr, filters=[("state", "=", "ALIVE")], limit=1000,
                         raise_on_missing_output=False):
        out.setdefault(a.class_name, set()).add(hosts.get(a.node_id, a.node_id))
    return out


def test_chart_application_runs_a_labeling_cycle(chart_cluster, monkeypatch, tmp_path):
    t0 = time.perf_counter()
    cluster, r = chart_cluster
    for k, v in cluster.s3.env.items():  # the test reads the store for ground truth
        monkeypatch.setenv(k, v)
    serve_config = r.serve_config
    _deploy(cluster, serve_config)
    url = _ready_url(cluster, serve_config["http_options"]["port"])
    t_ready = time.perf_counter() - t0

    # The chart's register script, with the rendered ConfigMap's files and Secret's tokens.
    files = r.config_map("alray-config")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    tokens = r.api_tokens()
    env = {**os.environ, "ALRAY_URL": url, "ALRAY_CONFIG_DIR": str(tmp_path),
           "ALRAY_REGISTER_TIMEOUT_S": "60",
           "ALRAY_API_TOKENS": r.group("head").env["ALRAY_API_TOKENS"]}  # from the Secret
    reg = subprocess.run([sys.executable, str(tmp_path / "register.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert reg.returncode == 0 and f"{PROJECT}: created" in reg.stdout, reg.stdout + reg.stderr

    admin = httpx.Client(base_url=url, timeout=120,
                         headers={"Authorization": f"Bearer {tokens['admin']}"})
    labeler = httpx.Client(base_url=url, timeout=120,
                           headers={"Authorization": f"Bearer {tokens['label']}"})
    refused = labeler.post("/v1/projects", json={"name": "nope"})
    assert refused.status_code == 403, refused.text

    job = _wait_job(admin, admin.post(f"/v1/projects/{PROJECT}/ingest").json()["job_id"])
    assert job["state"] == "succeeded" and job["result"]["frames_added"] == 300, job
    job = _wait_job(admin, admin.post(f"/v1/projects/{PROJECT}/rounds", json={}).json()[
        "job"]["job_id"])
    assert job["state"] == "succeeded", job

    store = ConsistentStore(f"s3://{BUCKET}/service/projects/{PROJECT}")
    seed = _selection(admin, 0)
    assert len(seed) == 20
    res = _label(labeler, store, seed, 0)
    assert res["accepted"] == 20, res
    job = _wait_job(admin, admin.post(f"/v1/projects/{PROJECT}/rounds", json={}).json()[
        "job"]["job_id"])
    assert job["state"] == "succeeded" and job["result"]["outcome"] == "awaiting_labels", job
    rounds = admin.get(f"/v1/projects/{PROJECT}/rounds").json()["data"]
    assert [(x["state"], x["labeled"]) for x in rounds] == [("COMPLETED", 20),
                                                            ("AWAITING_LABELS", 0)], rounds
    assert 0 <= rounds[0]["metrics"]["val_accuracy"] <= 1
    picked = _selection(admin, 1)
    assert len(picked) == 10 and not set(picked) & set(seed)
    assert _label(labeler, store, picked, 1)["accepted"] == 10

    # Every acknowledged label is in the store on S3, with the ground-truth class.
    labeled = store.read_frames(["label", "labeled_round"], "status = 'labeled'").to_pylist()
    assert {x["frame_id"]: (x["label"], x["labeled_round"]) for x in labeled} == {
        f: (label, int(f in picked)) for f, label in store.ground_truth(seed + picked).items()}
    assert admin.get(f"/v1/projects/{PROJECT}/rounds/1").json()["labeled"] == 10

    # Where the chart puts things: the head has no CPUs (num-cpus 0), so the Serve replica
    # runs on a worker host; Serve's controller stays on the head.
    where = _placement(cluster)
    replicas = set().union(*(h for c, h in where.items() if c.startswith("ServeReplica:alray")))
    assert replicas and replicas <= {"w1", "w2"}, where
    assert where.get("ServeController") == {"head"}, where
    print(f"\nchart on the namespace cluster: Serve ready after {t_ready:.0f}s, labeling "
          f"cycle done after {time.perf_counter() - t0:.0f}s (cluster start "
          f"{cluster.timings.get('ray_started_s', 0):.0f}s)")
