"""Killing the whole service (replica and job runner) mid-round loses no label and no round."""

from __future__ import annotations

import contextlib
import time

import httpx

from alray.service.catalog import ConsistentStore
from tests.service.conftest import Served, project_config, start_service, stop_service


def _wait_state(served: Served, path: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = served.http.get(path).json()
        if rec.get("state") in states:
            return rec
        time.sleep(0.1)
    raise TimeoutError(f"{path} never reached {states}")


def test_restart_mid_round_loses_nothing(served: Served, tmp_path):
    http = served.http
    cfg = project_config(tmp_path, "restart", **{
        "pool.limit": 400, "train.max_epochs": 6, "train.patience": 6,
        "train.epoch_samples": 2048})
    assert http.post("/v1/projects", json=cfg).status_code == 201
    assert served.wait_job(http.post("/v1/projects/restart/ingest").json()["job_id"])[
        "state"] == "succeeded"
    assert served.wait_job(http.post("/v1/projects/restart/rounds", json={}).json()["job"][
        "job_id"])["state"] == "succeeded"
    sel = http.get("/v1/projects/restart/rounds/0/selection", params={"format": "jsonl"})
    ids = [httpx.Response(200, content=x).json()["frame_id"] for x in sel.text.splitlines()]
    store = ConsistentStore(str(served.root / "projects" / "restart"))
    gt = store.ground_truth(ids)
    items = [{"frame_id": f, "label": gt[f], "idempotency_key": f"r:{f}"} for f in ids]
    assert http.post("/v1/projects/restart/labels",
                     json={"labels": items[:15]}).json()["accepted"] == 15

    # Train on the partial labels (force); while round 0 trains, 5 more labels arrive.
    job = http.post("/v1/projects/restart/rounds", json={"force": True}).json()["job"]
    _wait_state(served, "/v1/projects/restart/rounds/0", {"TRAINING"})
    assert http.post("/v1/projects/restart/labels",
                     json={"labels": items[15:]}).json()["accepted"] == 5
    assert http.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "running"
    # Crash: the replica and the detached job runner both go away mid-round.
    stop_service(served.root, kill_runner=True, shutdown=False)
    # A client retrying during the outage gets no stored result, and resubmits after restart.
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(served.url + "/v1/projects/restart/labels", json={"labels": items},
                   timeout=2)
    start_service(served.root, int(served.url.rsplit(":", 1)[1]))

    again = http.post("/v1/projects/restart/labels", json={"labels": items}).json()
    assert again["duplicate"] == 20 and again["accepted"] == 0
    done = served.wait_job(job["job_id"])
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2  # resumed by the new runner, not run to the end before
    rounds = http.get("/v1/projects/restart/rounds").json()["data"]
    assert [r["state"] for r in rounds] == ["COMPLETED", "AWAITING_LABELS"]
    assert rounds[0]["labeled"] == 20 and rounds[1]["selected"] == 10
    # Every label is stored once, with its value, and audited once.
    frames = store.read_frames(["label", "status"], "selected_round = 0").to_pylist()
    assert {r["frame_id"]: r["label"] for r in frames} == gt
    assert store.label_events("accepted = true").num_rows == 20
    assert not set(ids) & {t["frame_id"] for t in store.read_frames(
        [], "selected_round = 1").to_pylist()}
