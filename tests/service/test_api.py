"""Labels (idempotent, conflicting, partly invalid), auth and client errors over a socket."""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import OTHER_TOKEN, Served


def _post(served: Served, labels: list[dict], **extra) -> httpx.Response:
    return served.http.post("/v1/projects/api/labels", json={"labels": labels, **extra})


def test_same_item_twice_is_accepted_once(served, seeded):
    f = seeded["ids"][0]
    item = {"frame_id": f, "label": 3, "idempotency_key": "retry-1"}
    first = _post(served, [item])
    again = _post(served, [item, item])
    assert first.status_code == 200 and first.json()["accepted"] == 1
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    events = seeded["store"].label_events(f"frame_id = '{f}' AND accepted = true")
    assert events.num_rows == 1  # the audit log counts it once
    # The same label without a key is a no-op duplicate too; labels may be class names.
    same = _post(served, [{"frame_id": f, "label": "3"}]).json()
    assert same["results"][0]["status"] == "duplicate"


def test_labels_survive_the_label_writer_dying(served, seeded):
    """The ingress retries a batch on a new writer when the actor died mid-service."""
    import ray

    from alray.service.writer import writer_name

    f = seeded["ids"][8]  # a frame no other test labels
    item = {"frame_id": f, "label": 4, "idempotency_key": "writer-crash"}
    assert _post(served, [item]).json()["accepted"] == 1
    ray.kill(ray.get_actor(writer_name(str(served.root)), namespace="alray"))  # it restarts
    again = _post(served, [item, {"frame_id": f, "label": 4}])
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    assert seeded["store"].label_events(
        "idempotency_key = 'writer-crash' AND accepted = true").num_rows == 1


def test_conflicting_label_is_409_unless_overwrite(served, seeded):
    f, g = seeded["ids"][1], seeded["ids"][2]
    assert _post(served, [{"frame_id": f, "label": 1}]).json()["accepted"] == 1
    r = _post(served, [{"frame_id": f, "label": 2}, {"frame_id": g, "label": 5}])
    assert r.status_code == 409
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["conflict", "accepted"]
    assert "overwrite=true" in body["results"][0]["reason"]
    frame = served.http.get(f"/v1/projects/api/frames/{f}").json()
    assert frame["label"] == 1 and frame["label_name"] == "1"
    r = _post(served, [{"frame_id": f, "label": 2}], overwrite=True)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert served.http.get(f"/v1/projects/api/frames/{f}").json()["label"] == 2


def test_partly_invalid_batch_stores_the_valid_items(served, seeded):
    good = seeded["ids"][3:6]
    items = [{"frame_id": "no-such-frame:1", "label": 1},
             {"frame_id": seeded["unselected"][0], "label": 1},
             {"frame_id": seeded["test"], "label": 1},
             {"frame_id": good[0], "label": 99},
             {"frame_id": good[1], "label": "zebra"},
             *({"frame_id": g, "label": 4} for g in good)]
    r = _post(served, items)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["rejected"] * 5 + ["accepted"] * 3
    reasons = [x["reason"] for x in res[:5]]
    assert reasons[0] == "unknown frame_id" and reasons[1] == "frame was never selected"
    assert "'test' split" in reasons[2] and "out of range" in reasons[3]
    assert "not a class" in reasons[4]
    for g in good:
        assert served.http.get(f"/v1/projects/api/frames/{g}").json()["status"] == "labeled"
    rejected = seeded["store"].label_events("accepted = false")["reason"].to_pylist()
    assert "unknown frame_id" in rejected and any("not a class" in x for x in rejected)


def test_label_studio_webhook(served, seeded):
    f = seeded["ids"][7]
    ev = {"action": "ANNOTATION_CREATED", "task": {"id": 1, "data": {"frame_id": f}},
          "annotation": {"id": 11, "created_at": "t0",
                         "result": [{"type": "choices", "value": {"choices": ["6"]}}]}}
    url = "/v1/projects/api/webhooks/label-studio"
    assert served.http.post(url, json=ev).json()["accepted"] == 1
    assert served.http.post(url, json=ev).json()["duplicate"] == 1  # redelivery
    ev = {**ev, "action": "ANNOTATION_UPDATED",
          "annotation": {**ev["annotation"], "updated_at": "t1",
                         "result": [{"value": {"choices": ["8"]}}]}}
    assert served.http.post(url, json=ev).json()["accepted"] == 1
    assert served.http.get(f"/v1/projects/api/frames/{f}").json()["label"] == 8
    bad = served.http.post(url, json={"action": "PROJECT_CREATED"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid"


def test_auth(served, seeded):
    url = served.url + "/v1/projects/api"
    none = httpx.get(url)
    assert none.status_code == 401 and none.json()["error"] == "unauthorized"
    assert none.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "nope" not in wrong.text
    assert httpx.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).status_code == 200
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):  # /metrics: its own token
        assert httpx.get(served.url + path).status_code == 200, path
    assert httpx.post(served.url + "/v1/projects/api/labels",
                      json={"labels": [{"frame_id": "x", "label": 1}]}).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "code"), [
    ("get", "/v1/projects/nope", None, 404),
    ("get", "/v1/projects/api/rounds/7", None, 404),
    ("get", "/v1/projects/api/rounds/-1", None, 422),
    ("get", "/v1/projects/api/rounds/x/selection", None, 422),
    ("get", "/v1/projects/api/rounds/9/selection", None, 404),
    ("get", "/v1/projects/api/rounds/0/selection?cursor=garbage", None, 422),
    ("get", "/v1/projects/api/rounds/0/selection?format=csv", None, 422),
    ("get", "/v1/projects/api/rounds/0/selection?limit=0", None, 422),
    ("get", "/v1/projects/api/frames/no-such-frame", None, 404),
    ("get", "/v1/jobs/0123456789abcdef", None, 404),
    ("post", "/v1/projects", {"name": "x", "pool": {"val_fraction": 2}}, 422),
    ("post", "/v1/projects", {"name": "bad name!"}, 422),
    ("post", "/v1/projects", {"nmae": "typo"}, 422),
    ("post", "/v1/projects/api/labels", {"labels": []}, 422),
    ("post", "/v1/projects/api/labels", {"labels": [{"frame_id": "a"}]}, 422),
    ("post", "/v1/projects/api/labels", {"labels": [{"frame_id": "a", "label": 2**40}]}, 422),
    ("post", "/v1/projects/api/rounds", {"strategy": "nope"}, 422),
    ("post", "/v1/projects/api/rounds", {"forse": True}, 422),
    ("post", "/v1/projects/nope/rounds", {}, 404),
    ("post", "/v1/projects/nope/labels", {"labels": [{"frame_id": "a", "label": 1}]}, 404),
])
def test_client_errors_are_4xx_json(served, seeded, method, path, body, code):
    r = getattr(served.http, method)(path, **({"json": body} if body is not None else {}))
    assert r.status_code == code, r.text
    assert r.json()["error"] and r.json()["detail"]


def test_malformed_json_body_is_422(served, seeded):
    r = served.http.post("/v1/projects/api/labels", content=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid"


def test_round_conflicts_while_running_or_awaiting(served, seeded):
    r = served.http.post("/v1/projects/api/rounds", json={})
    assert r.status_code == 409 and r.json()["waiting"] > 0
