"""Rounds: start the next one, read them, page through a round's selection."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from alray import acquisition
from alray.exports import coco_categories
from alray.rounds import RoundController, RoundState
from alray.service.deps import AdminScope, ProjectDep, ReadScope, StateDep
from alray.service.errors import Conflict, Invalid
from alray.service.exports import decode_cursor, encode_cursor, export_items, frame_url
from alray.service.routes.frames import base_url
from alray.service.routes.jobs import job_public
from alray.service.schemas import (
    RoundPublic,
    RoundsPublic,
    RoundStart,
    RoundStartPublic,
    SelectionPage,
)
from alray.service.state import Project, ServiceState
from alray.storage.schema import FrameStatus
from alray.storage.store import frame_filter

router = APIRouter(prefix="/v1/projects/{project}/rounds", tags=["rounds"])

RoundN = Annotated[int, Path(ge=0, le=1_000_000, description="Round number.")]


def _counts(p: Project) -> dict[int, tuple[int, int]]:
    """Per round: (selected, labeled) frame counts."""
    if not p.store.has_frames():
        return {}
    t = p.store.read_frames(["selected_round", "status"], "selected_round IS NOT NULL")
    out: dict[int, list[int]] = {}
    for n, s in zip(t["selected_round"].to_pylist(), t["status"].to_pylist(), strict=True):
        c = out.setdefault(n, [0, 0])
        c[0] += 1
        c[1] += s == FrameStatus.LABELED
    return {n: (a, b) for n, (a, b) in out.items()}


def round_public(state: ServiceState, rec: dict, counts: dict[int, tuple[int, int]]
                 ) -> RoundPublic:
    diag = dict(rec["diagnostics"])
    timings = diag.pop("timings", {})
    sel, lab = counts.get(rec["round"], (0, 0))
    return RoundPublic(
        round=rec["round"], state=rec["state"], strategy=rec["strategy"],
        batch_size=rec["batch_size"], selected=sel, labeled=lab,
        checkpoint_uri=state.roots.show(rec["checkpoint_uri"]), metrics=rec["metrics"],
        diagnostics=diag, timings=timings, stop_reason=rec["stop_reason"],
        error=state.roots.scrub(rec["error"]),
        started_at=rec["started_at"], updated_at=rec["updated_at"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RoundStartPublic,
             responses={404: {}, 409: {"description": "a round is running, labels are awaited "
                                        "(pass force), or the project has stopped"}, 422: {}})
def start_round(state: StateDep, p: ProjectDep, _: AdminScope, body: RoundStart | None = None
                ) -> RoundStartPublic:
    """Start the next round (train → score → select) in the background, or resume one.

    The first call seeds round 0. A round whose selection still awaits labels is trained only
    with ``force``; then the next round is scored and selected.
    """
    body = body or RoundStart()
    if body.strategy is not None:
        try:
            acquisition.requirements(body.strategy)
        except ValueError as err:
            raise Invalid(f"strategy: {err}") from None
    if not p.store.has_frames():
        raise Conflict(f"project {p.name!r} has no frames: POST .../ingest first")
    rounds = p.store.rounds()
    last = rounds[-1] if rounds else None
    params: dict = {"strategy": body.strategy, "force": body.force}
    if last is not None and last["state"] == RoundState.AWAITING_LABELS:
        waiting = p.store.count_frames(frame_filter(
            status=FrameStatus.SELECTED, also=f"selected_round = {int(last['round'])}"))
        if waiting and not body.force:
            raise Conflict(f"round {last['round']} still awaits {waiting} labels: POST them "
                           "to .../labels, or start with force=true", waiting=waiting)
        params["force_round"] = last["round"] if waiting else None
    ctl = RoundController(p.cfg, p.store, annotator=None)
    reason = ctl.finished()
    if reason:
        raise Conflict(f"project {p.name!r} has stopped ({reason}); raise the limit in a new "
                       "project config to continue", stop_reason=reason)
    nxt = last["round"] if last and last["state"] not in ("COMPLETED", "STOPPED") else (
        last["round"] + 1 if last else 0)
    job = state.submit(p.name, "round", params)
    return RoundStartPublic(job=job_public(state, job), next_round=nxt)


@router.get("", response_model=RoundsPublic, responses={404: {}})
def list_rounds(state: StateDep, p: ProjectDep, _: ReadScope) -> RoundsPublic:
    """Every round, oldest first."""
    counts = _counts(p)
    data = [round_public(state, r, counts) for r in p.store.rounds()]
    return RoundsPublic(data=data, count=len(data))


@router.get("/{n}", response_model=RoundPublic, responses={404: {}})
def get_round(state: StateDep, p: ProjectDep, n: RoundN, _: ReadScope) -> RoundPublic:
    """One round: state, strategy, batch size, timings, metrics and diagnostics."""
    return round_public(state, state.round(p, n), _counts(p))


@router.get("/{n}/selection", response_model=SelectionPage,
            responses={200: {"content": {"application/x-ndjson": {}}}, 404: {}, 409: {},
                       422: {}})
async def get_selection(
    state: StateDep, p: ProjectDep, n: RoundN, request: Request, _: ReadScope,
    format: Annotated[Literal["jsonl", "label-studio", "coco"], Query()] = "label-studio",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """A page of round ``n``'s selected frames, with URLs an annotator can open.

    ``format=jsonl`` answers NDJSON (one frame per line; the next cursor in ``X-Next-Cursor``,
    the selection size in ``X-Total-Count``); the other formats answer a JSON page.

    A final selection is cached in the replica, so a page is served from memory on the event
    loop; only the first request of a round reads the store (in a worker thread).
    """
    if limit > state.settings.max_page:
        raise Invalid(f"limit={limit}: must be <= {state.settings.max_page}")
    offset = decode_cursor(cursor)
    rows = state.cached_selection(p.name, n)
    if rows is None or not p.classes_known():
        rows = await run_in_threadpool(state.selection, p, n)
        await run_in_threadpool(p.classes)
    page = rows[offset:offset + limit]
    base = base_url(state, request)
    urls = [frame_url(r, project=p.name, base=base, signer=state.signer,
                      expiry_s=state.settings.url_expiry_s) for r in page]
    classes = p.classes()
    if format == "jsonl":  # source paths relative to their data root
        page = [{**r, "source_uri": state.roots.show(r["source_uri"])} for r in page]
    items = export_items(page, format, urls=urls, classes=classes, offset=offset)
    nxt = encode_cursor(offset + limit) if offset + limit < len(rows) else None
    if format == "jsonl":
        headers = {"X-Total-Count": str(len(rows))}
        if nxt:
            headers["X-Next-Cursor"] = nxt
        body = "".join(json.dumps(i) + "\n" for i in items)
        return Response(body, media_type="application/x-ndjson", headers=headers)
    cats = coco_categories(classes) if format == "coco" else None
    # Serialised directly: the page is built from the schema's own fields, and skipping the
    # response-model round trip keeps a page well under a millisecond of CPU.
    return Response(json.dumps({"round": n, "format": format, "total": len(rows),
                                "count": len(items), "next_cursor": nxt, "items": items,
                                "categories": cats}), media_type="application/json")
