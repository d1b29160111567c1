"""Selection exports (JSONL, Label Studio, COCO) and the URLs annotators open.

Frames whose source is an image on ``s3://`` get a presigned S3 URL. Every other frame (a
local image, or a frame decoded from a container such as an IDX file or a video) gets a
service URL under ``/media`` signed with an HMAC and an expiry, so a labeling tool can open it
without holding an API token.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import time
from typing import Any
from urllib.parse import quote, urlparse

from alray.service.errors import Invalid
from alray.storage.uri import is_remote

__all__ = ["EXPORT_FORMATS", "MediaSigner", "decode_cursor", "encode_cursor", "export_items",
           "is_image_uri", "presign_s3"]

EXPORT_FORMATS = ("jsonl", "label-studio", "coco")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif",
                   ".tiff")


def is_image_uri(uri: str) -> bool:
    """True if the URI names a single image file (rather than a container of frames)."""
    return uri.lower().endswith(_IMAGE_SUFFIXES)


class MediaSigner:
    """Signs and checks ``/media/{project}/{frame_id}`` URLs.

    Args:
        key: the HMAC key (bytes).
        expiry_s: URL lifetime; expiries are rounded up to the hour so URLs stay stable.
    """

    def __init__(self, key: bytes, expiry_s: int):
        self.key = key
        self.expiry_s = expiry_s

    def _sig(self, project: str, frame_id: str, exp: int) -> str:
        msg = f"{project}\n{frame_id}\n{exp}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:32]

    def url(self, base: str, project: str, frame_id: str, now: float | None = None) -> str:
        exp = int((((now or time.time()) + self.expiry_s) // 3600 + 1) * 3600)
        return (f"{base.rstrip('/')}/media/{quote(project, safe='')}/"
                f"{quote(frame_id, safe='')}?exp={exp}&sig={self._sig(project, frame_id, exp)}")

    def check(self, project: str, frame_id: str, exp: int, sig: str) -> bool:
        if not time.time() <= exp < 2**62:
            return False
        return hmac.compare_digest(self._sig(project, frame_id, exp).encode(),
                                   sig.encode("utf-8", "replace"))


def presign_s3(uri: str, expiry_s: int) -> str:
    """A presigned GET URL for an ``s3://`` object (computed locally; no request is made)."""
    p = urlparse(uri)
    return _s3_client().generate_presigned_url("get_object", Params={"Bucket": p.netloc,
                                                           "Key": p.path.lstrip("/")},
                                     ExpiresIn=expiry_s)


@functools.lru_cache(maxsize=1)
def _s3_client():
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    return boto3.client("s3", endpoint_url=endpoint,
                        region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor stands for (None: 0).

    Raises:
        Invalid: the cursor was not issued by this service.
    """
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, value = raw.split(":", 1)
        offset = int(value)
        if kind != "o" or offset < 0:
            raise ValueError(raw)
    except Exception:  # any malformed cursor is the client's mistake
        raise Invalid(f"cursor={cursor!r}: not a cursor this service issued; pass the "
                      "next_cursor of the previous page") from None
    return offset


def export_items(rows: list[dict[str, Any]], fmt: str, *, urls: list[str],
                 classes: list[str], offset: int) -> list[dict[str, Any]]:
    """Render selected frames in an export format.

    Args:
        rows: frames (``frame_id``, ``source_uri``, ``source_id``, ``frame_index``,
            ``timestamp_ms``, ``selected_round``, ``height``, ``width``).
        fmt: one of :data:`EXPORT_FORMATS`.
        urls: one URL per row.
        classes: class names (Label Studio choices, COCO categories).
        offset: position of the first row in the whole selection (COCO image ids).
    """
    if fmt == "jsonl":
        return [{"frame_id": r["frame_id"], "url": u, "source_uri": r["source_uri"],
                 "source_id": r["source_id"], "frame_index": r["frame_index"],
                 "timestamp_ms": r["timestamp_ms"], "round": r["selected_round"]}
                for r, u in zip(rows, urls, strict=True)]
    if fmt == "label-studio":
        return [{"data": {"image": u, "frame_id": r["frame_id"], "round": r["selected_round"],
                          "source_id": r["source_id"], "frame_index": r["frame_index"]},
                 "meta": {"classes": classes}}
                for r, u in zip(rows, urls, strict=True)]
    return [{"id": offset + i + 1, "file_name": u, "coco_url": u, "height": r["height"],
             "width": r["width"], "alray_frame_id": r["frame_id"]}
            for i, (r, u) in enumerate(zip(rows, urls, strict=True))]


def frame_url(row: dict[str, Any], *, project: str, base: str, signer: MediaSigner,
              expiry_s: int) -> str:
    """The URL an annotator opens for one frame."""
    uri = row["source_uri"] or ""
    if is_remote(uri) and is_image_uri(uri):
        return presign_s3(uri, expiry_s)
    return signer.url(base, project, row["frame_id"])
