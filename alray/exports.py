"""Selection export formats (JSONL, Label Studio, COCO), shared by the service and the CLI.

Pure formatting and URL helpers only (no web framework, no Ray): the HTTP service
(:mod:`alray.service.exports`, ``GET .../rounds/{n}/selection``) and the command line's local
mode (:mod:`alray.local`, ``alray selection export CONFIG``) both render through
:func:`export_items` and :func:`coco_document`, so a file written either way has one shape.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlparse

__all__ = ["EXPORT_FORMATS", "SELECTION_COLUMNS", "SELECTION_FINAL", "coco_categories",
           "coco_document", "export_items", "is_image_uri", "presign_s3"]

EXPORT_FORMATS = ("jsonl", "label-studio", "coco")
#: The frame columns an export reads (besides ``frame_id``).
SELECTION_COLUMNS = ["source_uri", "source_id", "frame_index", "timestamp_ms",
                     "selected_round", "height", "width"]
#: Round states (values of :class:`alray.rounds.RoundState`) in which a round's selection is
#: complete and can no longer change.
SELECTION_FINAL = frozenset({"AWAITING_LABELS", "TRAINING", "COMPLETED", "STOPPED"})
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif",
                   ".tiff")


def is_image_uri(uri: str) -> bool:
    """True if the URI names a single image file (rather than a container of frames)."""
    return uri.lower().endswith(_IMAGE_SUFFIXES)


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


#: Fields of a round's selection record (``selections`` table) an export carries when the rows
#: hold them (see :func:`alray.pipeline.select.attach_selection`).
_SELECTION_FIELDS = ("rank", "score", "score_name", "strategy", "checkpoint_uri")


def _selection_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _SELECTION_FIELDS if k in row}


def export_items(rows: list[dict[str, Any]], fmt: str, *, urls: list[str | None],
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
                 "timestamp_ms": r["timestamp_ms"], "round": r["selected_round"],
                 **_selection_fields(r)}
                for r, u in zip(rows, urls, strict=True)]
    if fmt == "label-studio":
        return [{"data": {"image": u, "frame_id": r["frame_id"], "round": r["selected_round"],
                          "source_id": r["source_id"], "frame_index": r["frame_index"]},
                 "meta": {"classes": classes, **_selection_fields(r)}}
                for r, u in zip(rows, urls, strict=True)]
    return [{"id": offset + i + 1, "file_name": u, "coco_url": u, "height": r["height"],
             "width": r["width"], "alray_frame_id": r["frame_id"]}
            for i, (r, u) in enumerate(zip(rows, urls, strict=True))]


def coco_categories(classes: list[str]) -> list[dict[str, Any]]:
    """COCO ``categories``: one per class, ``id`` = the class index alray stores."""
    return [{"id": i, "name": c} for i, c in enumerate(classes)]


def coco_document(images: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """A whole COCO file for a selection: its ``images``, the categories, no annotations."""
    return {"images": images, "categories": coco_categories(classes), "annotations": []}
