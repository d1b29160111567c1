"""Selection exports (JSONL, Label Studio, COCO) and the URLs annotators open.

Frames whose source is an image on ``s3://`` get a presigned S3 URL. Every other frame (a
local image, or a frame decoded from a container such as an IDX file or a video) gets a
service URL under ``/media`` signed with an HMAC and an expiry, so a labeling tool can open it
without holding an API token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

# The export formats and S3 presigning live outside the service package (the CLI's local
# mode renders exports too); re-exported here for the routes.
from alray.exports import (  # noqa: F401  (_s3_client: tests clear its cache through here)
    EXPORT_FORMATS,
    _s3_client,
    export_items,
    is_image_uri,
    presign_s3,
)
from alray.service.errors import Invalid
from alray.storage.uri import is_remote

__all__ = ["EXPORT_FORMATS", "MediaSigner", "decode_cursor", "encode_cursor", "export_items",
           "is_image_uri", "presign_s3"]


class MediaSigner:
    """Signs and checks ``/media/{project}/{frame_id}`` URLs.

    Args:
        key: the HMAC key (bytes).
        expiry_s: URL lifetime. Expiries are rounded down to a step (an hour at most, a
            quarter of the lifetime for short ones) so URLs stay stable for a while, and a URL
            whose expiry lies further ahead than ``expiry_s`` is refused, whatever its
            signature.
    """

    def __init__(self, key: bytes, expiry_s: int):
        self.key = key
        self.expiry_s = expiry_s

    def _sig(self, project: str, frame_id: str, exp: int) -> str:
        msg = f"{project}\n{frame_id}\n{exp}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:32]

    def url(self, base: str, project: str, frame_id: str, now: float | None = None) -> str:
        step = max(1, min(3600, self.expiry_s // 4))
        exp = int(((now or time.time()) + self.expiry_s) // step * step)
        return (f"{base.rstrip('/')}/media/{quote(project, safe='')}/"
                f"{quote(frame_id, safe='')}?exp={exp}&sig={self._sig(project, frame_id, exp)}")

    def check(self, project: str, frame_id: str, exp: int, sig: str) -> bool:
        now = time.time()
        if not now <= exp <= now + self.expiry_s:
            return False
        return hmac.compare_digest(self._sig(project, frame_id, exp).encode(),
                                   sig.encode("utf-8", "replace"))


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


def frame_url(row: dict[str, Any], *, project: str, base: str, signer: MediaSigner,
              expiry_s: int) -> str:
    """The URL an annotator opens for one frame."""
    uri = row["source_uri"] or ""
    if is_remote(uri) and is_image_uri(uri):
        return presign_s3(uri, expiry_s)
    return signer.url(base, project, row["frame_id"])
