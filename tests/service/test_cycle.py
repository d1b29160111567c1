"""The full cycle over a real socket: create → ingest → round → selection → labels → next."""

from __future__ import annotations

import httpx

from tests.service.conftest import METRICS_TOKEN, Served, project_config


def _label_all(served: Served, project: str, n: int) -> dict:
    from alray.service.catalog import ConsistentStore as Store

    page = served.http.get(f"/v1/projects/{project}/rounds/{n}/selection",
                           params={"format": "jsonl", "limit": 1000})
    ids = [httpx.Response(200, content=line).json()["frame_id"]
           for line in page.text.splitlines()]
    store = Store(str(served.root / "projects" / project))
    gt = store.ground_truth(ids)
    body = {"labels": [{"frame_id": f, "label": gt[f], "idempotency_key": f"k:{f}"}
                       for f in ids]}
    return served.http.post(f"/v1/projects/{project}/labels", json=body).json()


def test_full_cycle(served: Served, tmp_path):
    http = served.http
    r = http.post("/v1/projects", json=project_config(tmp_path, "cycle"))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "cycle" and r.json()["rounds"] == 0
    assert http.post("/v1/projects", json=project_config(tmp_path, "cycle")).status_code == 409

    # A round before any frame exists is refused; ingest runs as a job with progress.
    assert http.post("/v1/projects/cycle/rounds", json={}).status_code == 409
    r = http.post("/v1/projects/cycle/ingest")
    assert r.status_code == 202
    job = served.wait_job(r.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["progress"]["done"] == job["progress"]["total"] == 600
    assert job["result"]["frames_added"] == 600
    proj = http.get("/v1/projects/cycle").json()
    assert proj["classes"][:3] == ["0", "1", "2"] and sum(
        proj["frames"][s] for s in ("pool", "val", "test")) == 600

    # Round 0: the seed selection.
    r = http.post("/v1/projects/cycle/rounds", json={})
    assert r.status_code == 202 and r.json()["next_round"] == 0
    assert served.wait_job(r.json()["job"]["job_id"])["state"] == "succeeded"
    rnd = http.get("/v1/projects/cycle/rounds/0").json()
    assert rnd["state"] == "AWAITING_LABELS" and rnd["selected"] == 20 and rnd["labeled"] == 0
    assert "seeding" in rnd["timings"]
    # Labels are awaited: a new round is refused until they arrive (or force).
    r = http.post("/v1/projects/cycle/rounds", json={})
    assert r.status_code == 409 and "awaits 20 labels" in r.json()["detail"]

    # Paging: two pages of 15 + 5 in Label Studio format, each frame exactly once.
    p1 = http.get("/v1/projects/cycle/rounds/0/selection",
                  params={"format": "label-studio", "limit": 15}).json()
    p2 = http.get("/v1/projects/cycle/rounds/0/selection",
                  params={"format": "label-studio", "limit": 15,
                          "cursor": p1["next_cursor"]}).json()
    assert p1["total"] == 20 and p1["count"] == 15 and p2["count"] == 5
    assert p2["next_cursor"] is None
    ids = [t["data"]["frame_id"] for t in p1["items"] + p2["items"]]
    assert len(set(ids)) == 20
    # The URLs open without a token (signed), and a tampered signature is refused.
    url = p1["items"][0]["data"]["image"]
    img = httpx.get(url)
    assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
    assert httpx.get(url.replace("sig=", "sig=0")).status_code == 403
    coco = http.get("/v1/projects/cycle/rounds/0/selection", params={"format": "coco"}).json()
    assert len(coco["items"]) == 20 and coco["categories"][0] == {"id": 0, "name": "0"}

    res = _label_all(served, "cycle", 0)
    assert res["accepted"] == 20, res
    frame = http.get(f"/v1/projects/cycle/frames/{ids[0]}").json()
    assert frame["status"] == "labeled" and frame["labeled_round"] == 0

    # Round 1: train round 0, then score and select the next batch.
    r = http.post("/v1/projects/cycle/rounds", json={"strategy": "entropy"})
    assert r.status_code == 202
    job = served.wait_job(r.json()["job"]["job_id"])
    assert job["state"] == "succeeded" and job["result"]["outcome"] == "awaiting_labels", job
    rounds = http.get("/v1/projects/cycle/rounds").json()
    assert [x["state"] for x in rounds["data"]] == ["COMPLETED", "AWAITING_LABELS"]
    r0 = rounds["data"][0]
    assert 0 <= r0["metrics"]["val_accuracy"] <= 1 and "training" in r0["timings"]
    assert rounds["data"][1]["selected"] == 10
    assert _label_all(served, "cycle", 1)["accepted"] == 10
    new = set(t["frame_id"] for t in [httpx.Response(200, content=x).json() for x in http.get(
        "/v1/projects/cycle/rounds/1/selection", params={"format": "jsonl"}).text.splitlines()])
    assert not new & set(ids)  # never selected twice

    # Scoring wrote embeddings: similar frames by example (the query itself excluded).
    sim = http.get(f"/v1/projects/cycle/frames/{ids[0]}/similar", params={"k": 5})
    assert sim.status_code == 200, sim.text
    body = sim.json()
    assert body["count"] == 5 and ids[0] not in [h["frame_id"] for h in body["data"]]
    sims = [h["similarity"] for h in body["data"]]
    assert sims == sorted(sims, reverse=True) and all(-1.0 <= x <= 1.0001 for x in sims)
    assert http.get("/v1/projects/cycle/frames/nope:1/similar").status_code == 404
    assert http.get(f"/v1/projects/cycle/frames/{ids[0]}/similar",
                    params={"k": 0}).status_code == 422

    metrics = httpx.get(served.url + "/metrics",
                        headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'alray_frames{project="cycle",split="pool",status="labeled"} 30.0' in metrics
    assert 'alray_labels_received_total{project="cycle",status="accepted"} 30.0' in metrics
    assert "alray_round_duration_seconds" in metrics and "alray_jobs" in metrics
