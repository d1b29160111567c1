"""A hostile client against the real service (issue #13, findings 1, 3, 4, 7 and 8).

Every finding is replayed as the request that exposed it; each test asserts the safe answer
(status code and JSON body) and that nothing was read, stored or broken.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import (
    LABEL_TOKEN,
    METRICS_TOKEN,
    OTHER_TOKEN,
    READ_TOKEN,
    TOKEN,
    Served,
    project_config,
    store_of,
)

MiB = 1 << 20


@pytest.fixture()
def outside():
    """A folder outside every data root of the test service, holding a 'secret' image."""
    d = Path(tempfile.mkdtemp(prefix="alray-outside-"))
    Image.fromarray(np.full((9, 9, 3), 7, np.uint8)).save(d / "secret.png")
    (d / "weights.pt").write_bytes(b"\x80secret")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(folder / f"f_{i}.png")
    return folder


def _no_server_paths(served: Served, text: str) -> None:
    base = str(served.root.parent)
    for leak in (base, os.path.realpath(base), str(Path(__file__).resolve().parents[2])):
        assert leak not in text, f"absolute server path {leak!r} in {text[:300]!r}"


# ---- finding 1: data roots --------------------------------------------------------------
def test_pool_outside_the_data_roots_is_refused(served: Served, tmp_path, outside):
    link = tmp_path / "innocent"
    link.symlink_to(outside)  # inside a root, pointing out of it
    hostile = [str(outside), "/usr/lib", "/etc", "file:///etc", "../../../../../../etc",
               f"{tmp_path}/../../../../../../etc", str(link), "s3://someone-elses-bucket/x"]
    for i, uri in enumerate(hostile):
        cfg = project_config(tmp_path, f"hostile-pool-{i}",
                             **{"pool.uri": uri, "pool.format": "image_prefix"})
        r = served.http.post("/v1/projects", json=cfg)
        assert r.status_code == 403, (uri, r.text)
        assert r.json()["error"] == "forbidden" and "ALRAY_DATA_ROOTS" in r.json()["detail"]
        assert served.http.get(f"/v1/projects/hostile-pool-{i}").status_code == 404
    cfg = project_config(tmp_path, "hostile-weights",
                         **{"model.weights_uri": str(outside / "weights.pt")})
    r = served.http.post("/v1/projects", json=cfg)
    assert r.status_code == 403 and "model.weights_uri" in r.json()["detail"]
    assert "secret" not in r.text and served.http.get(
        "/v1/projects/hostile-weights").status_code == 404


def test_manifest_entries_outside_the_data_roots_are_never_read(served: Served, tmp_path,
                                                               outside):
    inside = _images(tmp_path / "pool")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"uri\n{inside / 'f_0.png'}\n{outside / 'secret.png'}\n")
    cfg = project_config(tmp_path, "hostile-manifest",
                         **{"pool.uri": str(manifest), "pool.format": "manifest"})
    assert served.http.post("/v1/projects", json=cfg).status_code == 201
    job = served.wait_job(served.http.post("/v1/projects/hostile-manifest/ingest").json()[
        "job_id"])
    assert job["state"] == "failed" and "ALRAY_DATA_ROOTS" in job["error"], job
    assert str(outside) not in job["error"]
    assert not store_of(served, "hostile-manifest").has_frames()  # nothing was ingested


def test_media_serves_only_sources_under_a_data_root(served: Served, tmp_path, outside):
    pool = _images(tmp_path / "media-pool")
    cfg = project_config(tmp_path, "hostile-media",
                         **{"pool.uri": str(pool), "pool.format": "image_prefix"})
    created = served.http.post("/v1/projects", json=cfg)
    assert created.status_code == 201, created.text
    _no_server_paths(served, created.text)
    job = served.wait_job(served.http.post("/v1/projects/hostile-media/ingest").json()["job_id"])
    assert job["state"] == "succeeded", job
    fid = store_of(served, "hostile-media").read_frames([])["frame_id"].to_pylist()[0]
    frame = served.http.get(f"/v1/projects/hostile-media/frames/{fid}").json()
    assert not frame["source_uri"].startswith("/")  # relative to its data root
    src = pool / Path(frame["source_uri"]).name
    assert httpx.get(frame["url"]).content == src.read_bytes()
    src.unlink()
    src.symlink_to(outside / "secret.png")  # the source now points out of the root
    r = httpx.get(frame["url"])
    assert r.status_code == 403 and "ALRAY_DATA_ROOTS" in r.json()["detail"]
    assert (outside / "secret.png").read_bytes() not in r.content


def test_job_errors_carry_no_server_paths(served: Served, tmp_path):
    cfg = project_config(tmp_path, "hostile-missing", **{
        "pool.uri": str(tmp_path / "no" / "such" / "pool"), "pool.format": "image_prefix"})
    assert served.http.post("/v1/projects", json=cfg).status_code == 201
    job = served.wait_job(served.http.post("/v1/projects/hostile-missing/ingest").json()[
        "job_id"])
    assert job["state"] == "failed" and job["error"], job
    _no_server_paths(served, json.dumps(job))


# ---- finding 3: bodies ------------------------------------------------------------------
def _raw(served: Served, head: str, body: bytes = b"", wait: float = 15) -> bytes:
    """Send a request head and part of a body; return what the server answers meanwhile."""
    u = urlparse(served.url)
    with socket.create_connection((u.hostname, u.port), timeout=wait) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _head(path: str, length: int | None, token: str | None = None, chunked: bool = False
          ) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n"


def test_token_is_checked_before_the_body_is_read(served: Served):
    # 8 MB announced (within the limit), 64 KiB sent: the app answers 401 without waiting
    # for the rest of the body, let alone parsing it.
    t0 = time.monotonic()
    answer = _raw(served, _head("/v1/projects", 8_000_000), b"[" * 65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    # 30 MB announced: refused (401 by the app, or 413 by the ingress) before any is read.
    answer = _raw(served, _head("/v1/projects", 30_000_000), b"[" * 65536)
    assert answer.split(b"\r\n", 1)[0].split()[1] in (b"401", b"413"), answer[:200]
    assert time.monotonic() - t0 < 10
    assert httpx.get(served.url + "/readyz").status_code == 200


def test_bodies_beyond_the_limit_are_413(served: Served, seeded):
    answer = _raw(served, _head("/v1/projects/api/labels", 9 * MiB, TOKEN), b"{" * 1024)
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"413", answer[:200]
    # Chunked (no length): counted as it streams; the service stops reading at the limit.
    chunk = b"%x\r\n%s\r\n" % (MiB, b" " * MiB)
    answer = _raw(served, _head("/v1/projects/api/labels", None, TOKEN, chunked=True),
                  chunk * 10)
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"413", answer[:200]
    assert httpx.get(served.url + "/readyz").status_code == 200


def test_deeply_nested_json_is_refused_before_parsing(served: Served, seeded):
    deep = b'{"labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(served.url + "/v1/projects/api/labels", content=deep,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 401  # no token: not even looked at
    r = served.http.post("/v1/projects/api/labels", content=deep,
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "nested deeper" in r.json()["detail"], r.text
    shallow = b'{"labels": ' + b"[" * 900 + b"]" * 900 + b"}"  # Python would parse this
    r = served.http.post("/v1/projects/api/labels", content=shallow,
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "nested deeper" in r.json()["detail"], r.text


@pytest.mark.parametrize(("body", "deep"), [
    (b"[" * 65 + b"]" * 65, True),
    (b"[" * 64 + b"]" * 64, False),
    (json.dumps({"note": "[" * 500, "k": ["{" * 500]}).encode(), False),  # inside strings
    (b'["\\"' + b"[" * 70 + b'"]', False),  # an escaped quote does not end the string
    (b'["a\\\\"' + b"[" * 70 + b"]" * 71, True),  # an escaped backslash does
])
def test_json_depth_counts_brackets_outside_strings_only(body, deep):
    from alray.service.middleware import json_too_deep

    assert json_too_deep(body) is deep


# ---- finding 4: names and broken projects -----------------------------------------------
def test_trailing_newline_name_is_refused_and_breaks_nothing(served: Served, tmp_path):
    for name in ("nl\n", "ok-name\n", "a\nb"):
        r = served.http.post("/v1/projects", json=project_config(tmp_path, name))
        assert r.status_code == 422 and r.json()["error"] == "invalid", (name, r.text)
    assert not (served.root / "projects" / "nl\n").exists()
    m = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert m.status_code == 200 and 'project="nl' not in m.text
    assert httpx.get(served.url + "/readyz").status_code == 200


def test_a_broken_catalog_entry_breaks_no_other_project(served: Served, seeded):
    import pyarrow as pa

    from alray.service.catalog import _PROJECTS, Catalog

    table = Catalog(str(served.root))._table("projects", _PROJECTS)
    table.add(pa.Table.from_pylist([
        {"name": "planted-bad-config", "storage_uri": "/nowhere", "config": "{not json",
         "created_at": 0.0},
        {"name": "planted-no-store", "storage_uri": "/nowhere",
         "config": json.dumps({**project_config(served.root, "planted-no-store"),
                               "storage": {"uri": "/dev/null/no-store"}}),
         "created_at": 0.0}], schema=_PROJECTS))
    try:
        time.sleep(5.5)  # past the metrics cache
        m = httpx.get(served.url + "/metrics",
                      headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert m.status_code == 200, m.text
        assert 'alray_frames{project="api"' in m.text
        assert "alray_projects_unreadable 2.0" in m.text
        assert httpx.get(served.url + "/metrics").status_code == 401
        assert httpx.get(served.url + "/readyz").status_code == 200
        assert served.http.get("/v1/projects/api").status_code == 200
        r = served.http.get("/v1/projects/planted-bad-config")
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
    finally:
        table.delete("name LIKE 'planted-%'")


# ---- finding 7: signing key, URL lifetime, Host, paths, metrics, S3 endpoint ------------
def _signed(url: str) -> tuple[str, int, str]:
    u = urlparse(url)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    return u.path, int(q["exp"]), q["sig"]


def test_media_key_is_random_kept_private_and_urls_expire(served: Served, seeded):
    import hmac

    from alray.service.exports import MediaSigner
    from alray.service.settings import hash_token

    key_file = served.root / "_alray" / "signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = bytes.fromhex(key_file.read_text())
    page = served.http.get("/v1/projects/api/rounds/0/selection",
                           params={"format": "jsonl", "limit": 1})
    item = json.loads(page.text.splitlines()[0])
    path, exp, sig = _signed(item["url"])
    assert exp <= time.time() + 24 * 3600  # the default url_expiry_s
    fid = item["frame_id"]
    # The key once derived from token digests (anyone holding a token could compute it).
    digests = sorted({hash_token(t) for t in (TOKEN, OTHER_TOKEN, LABEL_TOKEN, READ_TOKEN)})
    old = hashlib.sha256(("alray-media\n" + "\n".join(digests)).encode()).digest()
    assert old != key
    forged = MediaSigner(old, 24 * 3600)._sig("api", fid, exp)
    assert httpx.get(served.url + path, params={"exp": exp, "sig": forged}).status_code == 403
    # A correctly signed URL that lives longer than url_expiry_s is refused too.
    far = int(time.time()) + 10 * 365 * 24 * 3600
    far_sig = hmac.new(key, f"api\n{fid}\n{far}".encode(), hashlib.sha256).hexdigest()[:32]
    assert httpx.get(served.url + path, params={"exp": far, "sig": far_sig}).status_code == 403
    assert httpx.get(item["url"]).status_code == 200


def test_exported_urls_ignore_the_host_header(served: Served, seeded):
    for fmt in ("jsonl", "label-studio", "coco"):
        r = served.http.get("/v1/projects/api/rounds/0/selection",
                            params={"format": fmt, "limit": 5},
                            headers={"Host": "attacker.test"})
        assert r.status_code == 200 and "attacker.test" not in r.text, r.text[:300]
        assert served.url + "/media/" in r.text
    frame = served.http.get(f"/v1/projects/api/frames/{seeded['ids'][0]}",
                            headers={"Host": "attacker.test"}).json()
    assert frame["url"].startswith(served.url + "/media/")


def test_responses_show_no_absolute_server_paths(served: Served, seeded):
    proj = served.http.get("/v1/projects/api")
    assert proj.json()["storage_path"] == "projects/api"
    assert proj.json()["config"]["pool"]["uri"] == "mnist-t10k"
    texts = [proj.text,
             served.http.get("/v1/projects/api/rounds").text,
             served.http.get("/v1/projects/api/rounds/0/selection",
                             params={"format": "jsonl"}).text,
             served.http.get(f"/v1/projects/api/frames/{seeded['ids'][0]}").text]
    for t in texts:
        _no_server_paths(served, t)


def test_metrics_name_projects_only_for_the_metrics_token(served: Served, seeded, tmp_path):
    r = httpx.get(served.url + "/metrics")
    assert r.status_code == 401 and "api" not in r.text
    assert httpx.get(served.url + "/metrics",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
    ok = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and 'project="api"' in ok.text
    # A service without a metrics token: open /metrics, series summed over projects.
    from alray.config import validate_config
    from alray.service.metrics import render_metrics
    from alray.service.settings import ServiceSettings
    from alray.service.state import ServiceState

    state = ServiceState(ServiceSettings(service_root=str(tmp_path / "svc")), {})
    state.catalog.add_project(validate_config(
        {**project_config(tmp_path, "secret-project-name"),
         "storage": {"uri": str(tmp_path / "svc" / "projects" / "secret-project-name")}}))
    text = render_metrics(state)[0].decode()
    assert 'alray_label_events{accepted="true"} 0.0' in text
    assert "alray_projects_unreadable 0.0" in text
    assert "project=" not in text and "secret-project-name" not in text
    assert "secret-project-name" in render_metrics(state, per_project=True)[0].decode()


def test_s3_endpoint_stays_out_of_the_worker_environment(monkeypatch, tmp_path):
    """A decode task applies a project's S3 endpoint to its own reads only."""
    from alray.sources.decode import decode_work_items
    from alray.storage.uri import storage_options

    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(k, raising=False)
    pool = _images(tmp_path / "imgs", 2)
    seen = []

    def read(task, **_):  # a reader that records the endpoint its filesystem would use
        seen.append(storage_options().get("aws_endpoint"))
        return {"frame_id": np.array([task["uri"]])}

    monkeypatch.setattr("alray.sources.decode.get_source", lambda fmt: (None, read))
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "project-a"}
    out = list(decode_work_items({"uri": np.array([str(pool / "f_0.png")])}, fmt="x",
                                 input_size=8, channels=1, env=env))
    assert len(out) == 1 and seen == ["http://127.0.0.1:9"]
    assert "AWS_ENDPOINT_URL" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ
    assert storage_options().get("aws_endpoint") is None


# ---- finding 8: scoped tokens -----------------------------------------------------------
def test_scoped_tokens(served: Served, seeded, tmp_path):
    def as_(token: str) -> httpx.Client:
        return httpx.Client(base_url=served.url, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    with as_(LABEL_TOKEN) as label, as_(READ_TOKEN) as read:
        # A labeling tool's token cannot create projects, ingest or start rounds.
        for client, scope in ((label, "label"), (read, "read")):
            r = client.post("/v1/projects", json=project_config(tmp_path, "by-" + scope))
            assert r.status_code == 403 and r.json()["needed_scope"] == "admin", r.text
            assert client.post("/v1/projects/api/ingest").status_code == 403
            assert client.post("/v1/projects/api/rounds", json={"force": True}
                               ).status_code == 403
            assert client.get("/v1/projects/api").status_code == 200
            assert client.get("/v1/projects/api/rounds/0/selection").status_code == 200
        assert served.http.get("/v1/projects/by-label").status_code == 404
        # Labels: the label token may post them, the read token may not.
        item = {"labels": [{"frame_id": seeded["ids"][19], "label": 2}]}
        r = read.post("/v1/projects/api/labels", json=item)
        assert r.status_code == 403 and "'label'" in r.json()["detail"]
        assert read.post("/v1/projects/api/webhooks/label-studio",
                         json={"action": "ANNOTATION_CREATED"}).status_code == 403
        assert label.post("/v1/projects/api/labels", json=item).status_code in (200, 409)
    with as_(METRICS_TOKEN) as metrics:  # the metrics token is no API token
        assert metrics.get("/v1/projects/api").status_code == 403


def test_client_reads_the_scoped_token_syntax(served: Served, seeded, monkeypatch):
    from alray.client import Client

    monkeypatch.delenv("ALRAY_TOKEN", raising=False)
    monkeypatch.setenv("ALRAY_API_TOKENS", f"read:{READ_TOKEN},admin:{TOKEN}")
    with Client(served.url) as c:
        assert c.project("api")["name"] == "api"  # sent READ_TOKEN, not "read:..."
