"""Export helpers: cursors, signed media URLs, presigned S3 URLs, export formats."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from alray.service.errors import Invalid
from alray.service.exports import (
    MediaSigner,
    decode_cursor,
    encode_cursor,
    export_items,
    frame_url,
)

ROW = {"frame_id": "clip-7:12", "source_uri": "/data/clip-7.mp4", "source_id": "clip-7",
       "frame_index": 12, "timestamp_ms": 480, "selected_round": 3, "height": 28, "width": 28}


def test_cursor_round_trip_and_garbage():
    assert decode_cursor(encode_cursor(1234)) == 1234 and decode_cursor(None) == 0
    for bad in ("garbage", encode_cursor(5)[:-1] + "!", "bzotMQ"):
        with pytest.raises(Invalid, match="cursor="):
            decode_cursor(bad)


def test_signed_media_url_checks_signature_and_expiry():
    signer = MediaSigner(b"k", expiry_s=3600)
    url = signer.url("http://svc:8000/", "proj", ROW["frame_id"])
    parsed = urlparse(url)
    assert parsed.path == "/media/proj/clip-7%3A12"
    q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    exp, sig = int(q["exp"]), q["sig"]
    assert time.time() + 2700 <= exp <= time.time() + 3600  # capped at the lifetime
    assert signer.check("proj", unquote("clip-7%3A12"), exp, sig)
    assert not signer.check("proj", "clip-7:13", exp, sig)  # another frame
    assert not signer.check("other", ROW["frame_id"], exp, sig)
    assert not signer.check("proj", ROW["frame_id"], exp + 1, sig)  # extended expiry
    assert not signer.check("proj", ROW["frame_id"], exp, "é" * 32)  # non-ASCII: no crash
    assert not MediaSigner(b"other-key", 3600).check("proj", ROW["frame_id"], exp, sig)
    old = signer.url("http://svc", "proj", "f", now=time.time() - 10 * 3600)
    q = {k: v[0] for k, v in parse_qs(urlparse(old).query).items()}
    assert not signer.check("proj", "f", int(q["exp"]), q["sig"])  # expired


def test_s3_images_get_presigned_urls(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    from alray.service import exports

    exports._s3_client.cache_clear()
    signer = MediaSigner(b"k", 3600)
    url = frame_url({**ROW, "source_uri": "s3://pool/cars/a.jpg"}, project="p",
                    base="http://svc", signer=signer, expiry_s=600)
    exports._s3_client.cache_clear()
    assert url.startswith("http://127.0.0.1:9/pool/cars/a.jpg?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    # A frame inside a video (or IDX file) on S3 is served, signed, by the service.
    assert frame_url({**ROW, "source_uri": "s3://pool/clip-7.mp4"}, project="p",
                     base="http://svc", signer=signer, expiry_s=600).startswith(
        "http://svc/media/p/")


def test_export_formats():
    urls = ["http://u/1"]
    ls = export_items([ROW], "label-studio", urls=urls, classes=["a", "b"], offset=0)
    assert ls == [{"data": {"image": "http://u/1", "frame_id": "clip-7:12", "round": 3,
                            "source_id": "clip-7", "frame_index": 12},
                   "meta": {"classes": ["a", "b"]}}]
    coco = export_items([ROW], "coco", urls=urls, classes=["a"], offset=40)
    assert coco[0]["id"] == 41 and coco[0]["alray_frame_id"] == "clip-7:12"
    jl = export_items([ROW], "jsonl", urls=urls, classes=[], offset=0)
    assert jl[0]["url"] == "http://u/1" and jl[0]["timestamp_ms"] == 480
