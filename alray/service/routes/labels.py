"""Label intake: batches from labeling platforms, and Label Studio webhooks."""

from __future__ import annotations

import logging

import ray
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from alray.labels import LabelItem, LabelResult
from alray.service.deps import Auth, ProjectDep, StateDep
from alray.service.errors import Invalid
from alray.service.metrics import LABELS_RECEIVED
from alray.service.schemas import LabelIn, LabelOut, LabelsPublic, LabelsSubmit, LabelStudioEvent
from alray.service.state import Project, ServiceState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/projects/{project}", tags=["labels"], dependencies=[Auth])

_CONFLICT = {409: {"model": LabelsPublic, "description": "some items conflict with an "
                   "existing label (the others were stored; see results)"}}


async def store_labels(state: ServiceState, p: Project, labels: list[LabelIn], *, source: str,
                       overwrite: bool) -> LabelsPublic:
    """Resolve class names, submit to the label writer, and count; one result per item."""
    classes = p.classes() if p.classes_known() else await run_in_threadpool(p.classes)
    index = {c: i for i, c in enumerate(classes)}
    items: list[LabelItem] = []
    results: list[LabelResult | None] = []
    rejected_events = []
    for it in labels:  # request items, bounded by the schema (≤ 10,000)
        label = it.label
        if isinstance(label, str):
            label = index.get(label, int(label) if label.isdigit() else None)
        if label is None:
            results.append(LabelResult(it.frame_id, "rejected",
                                       f"label {it.label!r} is not a class of this project "
                                       f"({', '.join(classes) or 'none ingested yet'})"))
            rejected_events.append({"frame_id": it.frame_id, "label": None,
                                    "idempotency_key": it.idempotency_key, "source": source,
                                    "accepted": False, "reason": results[-1].reason})
        else:
            items.append(LabelItem(it.frame_id, int(label), it.idempotency_key))
            results.append(None)
    if not (p.frames_known() or await run_in_threadpool(p.has_frames)):
        raise Invalid(f"project {p.name!r} has no frames yet (ingest first)")
    kwargs = {"source": source, "overwrite": overwrite, "num_classes": p.num_classes(),
              "rejected": rejected_events}
    try:
        judged = await state.writer().submit.remote(p.cfg.storage.uri, items, **kwargs)
    except ray.exceptions.RayActorError:  # the writer died (and restarts): retry once; a
        # batch it had committed comes back as duplicates, never twice
        log.warning("label writer is gone; retrying the batch on a new one")
        judged = await state.writer(renew=True).submit.remote(p.cfg.storage.uri, items, **kwargs)
    judged_iter = iter(judged)
    out = [r if r is not None else next(judged_iter) for r in results]
    counts = {s: 0 for s in ("accepted", "duplicate", "conflict", "rejected")}
    for r in out:
        counts[r.status] += 1
    for s, c in counts.items():
        if c:
            LABELS_RECEIVED.labels(project=p.name, status=s).inc(c)
    return LabelsPublic(**counts, results=[LabelOut(frame_id=r.frame_id, status=r.status,
                                                    reason=r.reason) for r in out])


def _respond(res: LabelsPublic) -> LabelsPublic | JSONResponse:
    if res.conflict:
        return JSONResponse(res.model_dump(), 409)
    return res


@router.post("/labels", response_model=LabelsPublic, responses={404: {}, 422: {}, **_CONFLICT})
async def post_labels(state: StateDep, p: ProjectDep, body: LabelsSubmit
                      ) -> LabelsPublic | JSONResponse:
    """Store labels for selected frames; every item gets a result.

    An ``idempotency_key`` seen before, or the same label again, is a ``duplicate``; a
    different label for a labeled frame is a ``conflict`` (the response is 409) unless
    ``overwrite``; unknown, never-selected or out-of-range items are ``rejected`` with a reason
    while the valid ones are still stored.
    """
    return _respond(await store_labels(state, p, body.labels, source="http",
                                       overwrite=body.overwrite))


@router.post("/webhooks/label-studio", response_model=LabelsPublic,
             responses={404: {}, 422: {}, **_CONFLICT})
async def label_studio_webhook(state: StateDep, p: ProjectDep, event: LabelStudioEvent
                               ) -> LabelsPublic | JSONResponse:
    """Take a Label Studio ANNOTATION_CREATED / ANNOTATION_UPDATED event.

    The task must carry ``data.frame_id`` (tasks exported with ``format=label-studio`` do);
    the label is the first choice of the annotation's result. An update overwrites.
    """
    if event.action not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        raise Invalid(f"action={event.action!r}: only ANNOTATION_CREATED and "
                      "ANNOTATION_UPDATED are handled")
    data = (event.task or {}).get("data")
    frame_id = data.get("frame_id") if isinstance(data, dict) else None
    if not isinstance(frame_id, str) or not frame_id:
        raise Invalid("task.data.frame_id: missing (export tasks with format=label-studio)")
    ann = event.annotation or {}
    choice = _first_choice(ann.get("result"))
    if choice is None:
        raise Invalid("annotation.result: no choices value to take as the label")
    key = f"ls:{ann.get('id')}:{ann.get('updated_at') or ann.get('created_at') or event.action}"
    try:
        item = LabelIn(frame_id=frame_id, label=choice, idempotency_key=key[:200])
    except ValidationError as err:
        raise Invalid(f"annotation: {err.errors()[0]['msg']}") from None
    return _respond(await store_labels(state, p, [item], source="label-studio",
                                       overwrite=event.action == "ANNOTATION_UPDATED"))


def _first_choice(result) -> int | str | None:
    """The first ``value.choices[0]`` of a Label Studio annotation result, if any."""
    if not isinstance(result, list):
        return None
    for r in result:
        value = r.get("value") if isinstance(r, dict) else None
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], str | int):
            return choices[0]
    return None
