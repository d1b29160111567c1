"""Frames."""

from __future__ import annotations

from fastapi import APIRouter, Request

from alray.service.deps import Auth, ProjectDep, StateDep
from alray.service.errors import NotFound
from alray.service.exports import frame_url
from alray.service.schemas import FramePublic
from alray.storage import sql_list

router = APIRouter(prefix="/v1/projects/{project}/frames", tags=["frames"], dependencies=[Auth])

_COLUMNS = ["source_uri", "source_id", "frame_index", "timestamp_ms", "split", "status",
            "label", "selected_round", "labeled_round", "score", "error"]


def base_url(state, request: Request) -> str:
    return state.settings.public_url or str(request.base_url)


@router.get("/{frame_id:path}", response_model=FramePublic, responses={404: {}})
def get_frame(state: StateDep, p: ProjectDep, frame_id: str, request: Request) -> FramePublic:
    """One frame: split, status, label, rounds, score and a URL to view it."""
    if not p.store.has_frames():
        raise NotFound(f"project {p.name!r} has no frames yet (ingest first)")
    rows = p.store.read_frames(_COLUMNS, f"frame_id = {sql_list([frame_id])[1:-1]}").to_pylist()
    if not rows:
        raise NotFound(f"frame {frame_id!r} not found in project {p.name!r}")
    r = rows[0]
    classes = p.classes()
    label = r["label"]
    name = classes[label] if label is not None and 0 <= label < len(classes) else None
    url = frame_url(r | {"frame_id": frame_id}, project=p.name, base=base_url(state, request),
                    signer=state.signer, expiry_s=state.settings.url_expiry_s)
    return FramePublic(frame_id=frame_id, label_name=name, url=url,
                       **{k: r[k] for k in _COLUMNS})
