"""Hostile label clients: malformed labels, concurrent bad batches, reused idempotency keys,
Label Studio events without ids, and the label writer dying under traffic (issue #13: 2, 5, 7)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from alray.labels import LabelItem
from alray.service.catalog import Catalog, ConsistentStore
from alray.service.intake import LabelIntake
from tests.service.conftest import Served, project_config
from tests.service.test_intake import _store

#: What only looks like a label. Each must be refused with 422 naming the item.
HOSTILE = [True, False, 3.0, 2.5, "²", "٣", "99999999999999999999", 99999999999999999999,
           None, [1], {"id": 1}]


@pytest.fixture(scope="module")
def hostile(served: Served, tmp_path_factory) -> dict:
    """A project whose round 0 selected 100 frames, none labeled; its store and their
    ground truth."""
    http = served.http
    cfg = project_config(tmp_path_factory.mktemp("hostile"), "hostile",
                         **{"pool.limit": 400, "loop.initial_labels": 100})
    assert http.post("/v1/projects", json=cfg).status_code == 201, "create"
    assert served.wait_job(http.post("/v1/projects/hostile/ingest").json()["job_id"])[
        "state"] == "succeeded"
    job = http.post("/v1/projects/hostile/rounds", json={}).json()["job"]
    assert served.wait_job(job["job_id"])["state"] == "succeeded"
    cfg, _ = Catalog(str(served.root)).project("hostile")
    store = ConsistentStore(cfg.storage.uri)
    ids = store.read_frames([], "selected_round = 0")["frame_id"].to_pylist()
    assert len(ids) == 100
    return {"ids": ids, "store": store, "gt": store.ground_truth(ids)}


def _post(served: Served, labels: list[dict], **extra) -> httpx.Response:
    return served.http.post("/v1/projects/hostile/labels", json={"labels": labels, **extra})


def _labels(store: ConsistentStore, ids: list[str]) -> dict[str, int | None]:
    rows = store.read_frames(["label"], None).to_pylist()
    return {r["frame_id"]: r["label"] for r in rows if r["frame_id"] in set(ids)}


def test_malformed_labels_are_422_naming_the_item(served, hostile):
    good, target = hostile["ids"][0], hostile["ids"][1]
    for bad in HOSTILE:
        r = _post(served, [{"frame_id": good, "label": 1},
                           {"frame_id": target, "label": bad}])
        assert r.status_code == 422, (bad, r.status_code, r.text)
        body = r.json()
        assert body["error"] == "invalid", body
        locs = {tuple(e["loc"][:3]) for e in body["errors"]}
        assert locs == {("body", "labels", 1)}, (bad, body)  # the index of the bad item
        assert any(repr(target) in e["msg"] for e in body["errors"]), (bad, body)  # its frame
    # Nothing of a refused request is stored, not even its good item.
    assert set(_labels(hostile["store"], [good, target]).values()) == {None}
    assert hostile["store"].label_events(f"frame_id IN ('{good}', '{target}')").num_rows == 0


def test_ascii_digit_strings_and_names_are_labels(served, hostile):
    f, g, h = hostile["ids"][2:5]
    r = _post(served, [{"frame_id": f, "label": "007"}, {"frame_id": g, "label": "7"},
                       {"frame_id": h, "label": "12"}])
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted", "accepted", "rejected"]
    assert "out of range [0, 10)" in res[2]["reason"]
    assert _labels(hostile["store"], [f, g, h]) == {f: 7, g: 7, h: None}


def test_concurrent_good_and_bad_batches(served, hostile):
    """Six good batches and six hostile ones at the same moment: every good label is stored,
    every bad batch is 422, nothing of a bad batch is stored."""
    ids, gt = hostile["ids"][10:70], hostile["gt"]
    batches, bad = [], []
    for b in range(12):
        chunk = ids[b * 5:(b + 1) * 5]
        items = [{"frame_id": f, "label": gt[f], "idempotency_key": f"cc:{f}"} for f in chunk]
        if b % 2:  # a bad batch: good items and one hostile label
            items[2]["label"] = HOSTILE[b // 2 + 4]
            bad.append(b)
        batches.append(items)
    start = threading.Barrier(len(batches))

    def send(items: list[dict]) -> httpx.Response:
        with httpx.Client(base_url=served.url, headers=served.http.headers, timeout=60) as c:
            start.wait()
            return c.post("/v1/projects/hostile/labels", json={"labels": items})

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(send, batches))
    for b, r in enumerate(answers):
        if b in bad:
            assert r.status_code == 422, (b, r.text)
        else:
            assert r.status_code == 200 and r.json()["accepted"] == 5, (b, r.text)
    stored = _labels(hostile["store"], ids)
    for b, items in enumerate(batches):
        for it in items:
            want = None if b in bad else gt[it["frame_id"]]
            assert stored[it["frame_id"]] == want, (b, it)


def test_one_failing_write_never_fails_the_others(tmp_path):
    """The label writer's group commit: one request whose write fails (an audit row that
    overflows int64) fails alone; the six requests written in the same group are stored."""
    store = _store(tmp_path)
    intake = LabelIntake(store)
    jobs = [[LabelItem(f"img:{i}", i % 10, f"g:{i}")] for i in range(6)]
    jobs.insert(3, [LabelItem("img:50", 2**70, "bad")])
    out: list = [None] * len(jobs)

    def run(j: int) -> None:
        try:
            out[j] = intake.submit(jobs[j], source="t", overwrite=False, num_classes=10)
        except Exception as err:  # noqa: BLE001 - the one failing request's error
            out[j] = err

    threads = [threading.Thread(target=run, args=(j,)) for j in range(len(jobs))]
    with intake._write:  # hold the writer: all seven requests queue and commit as one group
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(intake._queue) < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(intake._queue) == len(jobs)
    for t in threads:
        t.join(60)
    assert isinstance(out[3], OverflowError | ValueError), out[3]
    good = [o for j, o in enumerate(out) if j != 3]
    assert [r[0].status for r in good] == ["accepted"] * 6, good
    rows = store.read_frames(["label"], "status = 'labeled'").to_pylist()
    assert {r["frame_id"]: r["label"] for r in rows} == {f"img:{i}": i % 10 for i in range(6)}


def test_reused_idempotency_key_is_a_conflict(served, hostile):
    a, b = hostile["ids"][80:82]
    assert _post(served, [{"frame_id": a, "label": 3, "idempotency_key": "k-reuse"}]
                 ).json()["accepted"] == 1
    for other in ({"frame_id": b, "label": 3}, {"frame_id": a, "label": 4}):
        r = _post(served, [{**other, "idempotency_key": "k-reuse"}], overwrite=True)
        assert r.status_code == 409, r.text
        res = r.json()["results"][0]
        assert res["status"] == "conflict" and "already used for another payload" in res[
            "reason"], res
    again = _post(served, [{"frame_id": a, "label": 3, "idempotency_key": "k-reuse"}])
    assert again.status_code == 200 and again.json()["duplicate"] == 1
    assert _labels(hostile["store"], [a, b]) == {a: 3, b: None}
    # In one batch too: the second use of a key for another frame is refused.
    c, d = hostile["ids"][82:84]
    r = _post(served, [{"frame_id": c, "label": 1, "idempotency_key": "k-batch"},
                       {"frame_id": d, "label": 1, "idempotency_key": "k-batch"}])
    assert r.status_code == 409
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "conflict"]


def test_key_accepted_but_frame_never_updated_is_applied(tmp_path):
    """A writer that died between the audit log and the frames commit left an accepted key on
    an unlabeled frame: the client's retry applies the label (not 'duplicate'), logged once."""
    store = _store(tmp_path)
    store.append_label_events([{"frame_id": "img:5", "label": 3, "idempotency_key": "half",
                                "source": "t", "round": 0, "accepted": True, "reason": None}])
    res = LabelIntake(store).submit([LabelItem("img:5", 3, "half")], source="t",
                                    overwrite=False, num_classes=10)
    assert res[0].status == "accepted"
    assert store.read_frames(["label", "status"], "frame_id = 'img:5'").to_pylist()[0][
        "label"] == 3
    assert store.label_events("idempotency_key = 'half'").num_rows == 1


def test_label_studio_events_without_annotation_id(served, hostile):
    url = "/v1/projects/hostile/webhooks/label-studio"
    f, g = hostile["ids"][85:87]

    def event(frame: str, choice: str, **ann) -> dict:
        return {"action": "ANNOTATION_CREATED", "task": {"id": 1, "data": {"frame_id": frame}},
                "annotation": {"result": [{"value": {"choices": [choice]}}], **ann}}

    for frame in (f, g):  # both used to get the key ls:None:ANNOTATION_CREATED
        r = served.http.post(url, json=event(frame, "5"))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert served.http.post(url, json=event(f, "5")).json()["duplicate"] == 1  # redelivery
    unknown = served.http.post(url, json=event("no-such-frame:9", "5"))
    assert unknown.status_code == 200
    assert unknown.json()["results"][0] == {"frame_id": "no-such-frame:9",
                                            "status": "rejected", "reason": "unknown frame_id"}
    # One annotation id on two frames (a re-imported task) is two keys, not a duplicate.
    h, i = hostile["ids"][87:89]
    for frame in (h, i):
        r = served.http.post(url, json=event(frame, "2", id=77))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert _labels(hostile["store"], [f, g, h, i]) == {f: 5, g: 5, h: 2, i: 2}
    keys = hostile["store"].label_events("source = 'label-studio'")[
        "idempotency_key"].to_pylist()
    assert not any("None" in k for k in keys), keys


def test_labels_survive_writer_kills_under_traffic(served, hostile):
    """The label writer is killed twice while four clients post labels: every request is
    answered 200 once the writer is back, and every acknowledged label is stored once."""
    import ray

    from alray.service.writer import writer_name

    ids, gt = hostile["ids"][90:100], hostile["gt"]
    stop, answers = threading.Event(), []

    def client(n: int) -> None:
        with httpx.Client(base_url=served.url, headers=served.http.headers, timeout=90) as c:
            k = 0
            while not stop.is_set() or k < 3:
                f = ids[(n + 4 * k) % len(ids)]
                r = c.post("/v1/projects/hostile/labels", json={"labels": [
                    {"frame_id": f, "label": gt[f], "idempotency_key": f"kill:{f}"}]})
                answers.append((f, r.status_code, r.text))
                k += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(2):
        time.sleep(1.0)
        ray.kill(ray.get_actor(writer_name(str(served.root)), namespace="alray"))
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(120)
    bad = [a for a in answers if a[1] != 200]
    assert not bad, bad[:3]
    acked = {f for f, _, _ in answers}
    assert _labels(hostile["store"], sorted(acked)) == {f: gt[f] for f in acked}
    ev = hostile["store"].label_events("accepted = true AND idempotency_key LIKE 'kill:%'")
    assert sorted(ev["frame_id"].to_pylist()) == sorted(acked)  # each logged once


def test_writer_gone_for_longer_than_the_budget_is_503(ray_session):
    """While the writer cannot be reached the request retries with backoff for
    label_writer_retry_s, then answers 503 (never 500)."""
    import types

    import ray

    from alray.service.errors import Unavailable
    from alray.service.routes.labels import _submit
    from alray.service.settings import ServiceSettings
    from alray.service.writer import LabelWriter

    dead = ray.remote(LabelWriter).options(num_cpus=0).remote()
    ray.kill(dead, no_restart=True)
    calls = []

    def writer(*, renew: bool = False):
        calls.append(renew)
        return dead

    state = types.SimpleNamespace(settings=ServiceSettings(label_writer_retry_s=1.0),
                                  writer=writer)
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as err:
        asyncio.run(_submit(state, "unused", [], source="t", overwrite=False, num_classes=2,
                            rejected=[]))
    assert err.value.status == 503 and "retry the request later" in err.value.detail
    assert 1.0 <= time.monotonic() - t0 < 10
    assert len(calls) >= 4 and calls[0] is False and all(calls[1:])  # backoff, new handles
