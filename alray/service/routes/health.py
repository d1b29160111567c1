"""Health, readiness, Prometheus metrics and signed media (no bearer token)."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

from alray.service.deps import StateDep
from alray.service.errors import Forbidden, NotFound, Unauthorized
from alray.service.exports import is_image_uri
from alray.service.metrics import render_metrics
from alray.service.schemas import Status
from alray.service.settings import token_scope
from alray.storage import sql_list
from alray.storage.uri import read_bytes

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """Liveness: the replica answers."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(state: StateDep) -> Response | Status:
    """Readiness: the catalog can be read."""
    try:
        state.catalog.project_names()
    except Exception as err:  # not ready: report why, with 503
        return Response(Status(status="not_ready", detail=type(err).__name__)
                        .model_dump_json(), 503, media_type="application/json")
    return Status(status="ready")


@router.get("/metrics", response_class=PlainTextResponse, responses={401: {}, 403: {}})
def metrics(state: StateDep, request: Request) -> PlainTextResponse:
    """Prometheus text: frames, labels, rounds and job queues (Ray exports its own).

    With ALRAY_METRICS_TOKEN set, only that bearer token may scrape, and series carry a
    ``project`` label; without it, anyone may, and series are summed over projects (no
    project names).
    """
    per_project = any(s == "metrics" for s in state.tokens.values())
    if per_project:
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("/metrics needs 'Authorization: Bearer <ALRAY_METRICS_TOKEN>'")
        if token_scope(token.strip(), state.tokens) != "metrics":
            raise Forbidden("invalid metrics token")
    body, ctype = render_metrics(state, per_project=per_project)
    return PlainTextResponse(body, media_type=ctype)


_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
          ".gif": "image/gif", ".webp": "image/webp", ".bmp": "image/bmp"}


@router.get("/media/{project}/{frame_id:path}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 403: {}, 404: {}})
def media(state: StateDep, project: Annotated[str, Path(max_length=64)], frame_id: str,
          exp: Annotated[int, Query(ge=0, le=2**62)], sig: Annotated[str, Query(max_length=64)]
          ) -> Response:
    """A frame's image, for URLs handed out in selection exports (signed, expiring)."""
    if not state.signer.check(project, frame_id, exp, sig):
        raise Forbidden("bad or expired media signature")
    p = state.project(project)
    rows = p.store.read_frames(["source_uri", "image", "height", "width", "channels"],
                               f"frame_id = {sql_list([frame_id])[1:-1]}").to_pylist()
    if not rows:
        raise NotFound(f"frame {frame_id!r} not found in project {project!r}")
    r = rows[0]
    uri = r["source_uri"] or ""
    if not state.may_serve(p, uri):
        raise Forbidden(f"frame {frame_id!r}: its source lies outside ALRAY_DATA_ROOTS")
    if is_image_uri(uri):
        suffix = "." + uri.rsplit(".", 1)[-1].lower()
        return Response(read_bytes(uri), media_type=_TYPES.get(suffix, "application/octet-stream"))
    if not r["image"]:
        raise NotFound(f"frame {frame_id!r} has no decoded pixels")
    from PIL import Image

    pix = np.frombuffer(r["image"], np.uint8).reshape(r["height"], r["width"], r["channels"])
    buf = io.BytesIO()
    Image.fromarray(pix[:, :, 0] if r["channels"] == 1 else pix).save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")
