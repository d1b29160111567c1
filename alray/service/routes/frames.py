"""Frames."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from alray.service.deps import ProjectDep, ReadScope, StateDep
from alray.service.errors import Invalid, NotFound
from alray.service.exports import frame_url
from alray.service.schemas import FramePublic, SimilarFrame, SimilarFrames
from alray.storage import sql_list

router = APIRouter(prefix="/v1/projects/{project}/frames", tags=["frames"])

_COLUMNS = ["source_uri", "source_id", "frame_index", "timestamp_ms", "split", "status",
            "label", "selected_round", "labeled_round", "score", "error"]


def base_url(state, request: Request) -> str:
    """Where exported URLs point (never the request's Host header)."""
    return state.base_url(request.scope)


# Declared before the catch-all frame route: frame ids may contain '/'.
@router.get("/{frame_id:path}/similar", response_model=SimilarFrames,
            responses={404: {}, 422: {}})
def get_similar(state: StateDep, p: ProjectDep, frame_id: str, _: ReadScope,
                k: int = Query(10, ge=1, le=1000, description="How many neighbours.")
                ) -> SimilarFrames:
    """Frames most like ``frame_id`` (cosine over stored embeddings; IVF-PQ when large)."""
    from alray.pipeline.similar import ensure_ann_index, similar_frames

    if not p.store.has_frames():
        raise NotFound(f"project {p.name!r} has no frames yet (ingest first)")
    ensure_ann_index(p.store, p.cfg.pool.ann_min_rows)
    try:
        hits = similar_frames(p.store, frame_id, k)
    except LookupError:
        raise NotFound(f"frame {frame_id!r} not found in project {p.name!r}") from None
    except ValueError as err:  # e.g. no embedding yet: score a round first
        raise Invalid(str(err)) from None
    return SimilarFrames(frame_id=frame_id, count=len(hits), data=[
        SimilarFrame(**{**h, "source_uri": state.roots.show(h.get("source_uri"))})
        for h in hits])


@router.get("/{frame_id:path}", response_model=FramePublic, responses={404: {}})
def get_frame(state: StateDep, p: ProjectDep, frame_id: str, request: Request, _: ReadScope
              ) -> FramePublic:
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
                       **{**{k: r[k] for k in _COLUMNS},
                          "source_uri": state.roots.show(r["source_uri"]),
                          "error": state.roots.scrub(r["error"])})
