"""Label intake: batches from labeling platforms, and Label Studio webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time

import ray
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from alray.labels import LabelItem, LabelResult
from alray.labels import resolve_label as _resolve
from alray.service.deps import Auth, LabelScope, ProjectDep, StateDep
from alray.service.errors import Invalid, Unavailable
from alray.service.metrics import LABELS_RECEIVED
from alray.service.schemas import LabelIn, LabelOut, LabelsPublic, LabelsSubmit, LabelStudioEvent
from alray.service.state import Project, ServiceState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/projects/{project}", tags=["labels"], dependencies=[Auth])

_CONFLICT = {409: {"model": LabelsPublic, "description": "some items conflict with an "
                   "existing label (the others were stored; see results)"}}


async def store_labels(state: ServiceState, p: Project, labels: list[LabelIn], *, source: str,
                       overwrite: bool) -> LabelsPublic:
    """Resolve class names, submit to the label writer, and count; one result per item.

    Only labels in ``[0, num_classes)`` reach the writer (the schema already refused what is
    not an integer or a string); the others are ``rejected`` here.
    """
    classes = p.classes() if p.classes_known() else await run_in_threadpool(p.classes)
    index = {c: i for i, c in enumerate(classes)}
    num_classes = p.num_classes()
    items: list[LabelItem] = []
    results: list[LabelResult | None] = []
    rejected_events = []
    for it in labels:  # request items, bounded by the schema (≤ 10,000)
        label, reason = _resolve(it.label, index, num_classes)
        if reason is not None:
            results.append(LabelResult(it.frame_id, "rejected", reason))
            rejected_events.append({"frame_id": it.frame_id, "label": None,
                                    "idempotency_key": it.idempotency_key, "source": source,
                                    "accepted": False, "reason": results[-1].reason})
        else:
            items.append(LabelItem(it.frame_id, label, it.idempotency_key))
            results.append(None)
    if not (p.frames_known() or await run_in_threadpool(p.has_frames)):
        raise Invalid(f"project {p.name!r} has no frames yet (ingest first)")
    judged = await _submit(state, p.cfg.storage.uri, items, source=source, overwrite=overwrite,
                           num_classes=num_classes, rejected=rejected_events)
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


async def _submit(state: ServiceState, storage_uri: str, items: list[LabelItem], **kwargs
                  ) -> list[LabelResult]:
    """Hand ``items`` to the label writer; while it is gone (crashed, restarting), retry with
    exponential backoff for ``label_writer_retry_s``, then refuse with 503.

    A retry is safe: a batch the dead writer had committed comes back as duplicates (by
    idempotency key, or by the frame already having that label), never stored twice.

    Raises:
        Unavailable: the writer did not come back in time (503).
    """
    budget = state.settings.label_writer_retry_s
    deadline = time.monotonic() + budget
    delay, renew, tries = 0.05, False, 0
    while True:
        try:
            return await state.writer(renew=renew).submit.remote(storage_uri, items, **kwargs)
        except ray.exceptions.RayActorError as err:
            tries += 1
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("label writer unavailable after %d tries: %s", tries, err)
                raise Unavailable(f"the label writer is unavailable (tried {tries} times in "
                                  f"{budget:g}s); retry the request later, idempotency keys "
                                  "make that safe", retry_after_s=5) from None
            log.warning("label writer is gone (try %d); retrying in %.2fs", tries, delay)
            await asyncio.sleep(min(delay, left))
            delay, renew = min(delay * 2, 2.0), True


def _respond(res: LabelsPublic) -> LabelsPublic | JSONResponse:
    if res.conflict:
        return JSONResponse(res.model_dump(), 409)
    return res


@router.post("/labels", response_model=LabelsPublic, responses={404: {}, 422: {}, **_CONFLICT})
async def post_labels(state: StateDep, p: ProjectDep, body: LabelsSubmit, _: LabelScope
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
async def label_studio_webhook(state: StateDep, p: ProjectDep, event: LabelStudioEvent,
                               _: LabelScope) -> LabelsPublic | JSONResponse:
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
    try:
        item = LabelIn(frame_id=frame_id, label=choice,
                       idempotency_key=_webhook_key(event, frame_id, choice))
    except ValidationError as err:
        raise Invalid(f"annotation: {err.errors()[0]['msg']}") from None
    return _respond(await store_labels(state, p, [item], source="label-studio",
                                       overwrite=event.action == "ANNOTATION_UPDATED"))


def _webhook_key(event: LabelStudioEvent, frame_id: str, choice: int | str) -> str:
    """The idempotency key of a webhook event: a redelivery repeats it, anything else differs.

    With an annotation id: the id, plus a digest of (frame id, annotation id, its
    ``updated_at``/``created_at``; without either time, the action and the label). Without an
    id: a digest of the frame id and the whole event. Never a key shared by two frames.
    """
    ann = event.annotation or {}
    ann_id, stamp = ann.get("id"), ann.get("updated_at") or ann.get("created_at")
    if ann_id is None:
        basis, head = ["event", event.model_dump(mode="json")], "ls:event"
    else:
        basis = ["annotation", ann_id, stamp] if stamp else ["annotation", ann_id,
                                                              event.action, choice]
        head = f"ls:{str(ann_id)[:40]}"
    digest = hashlib.sha256(json.dumps([frame_id, *basis], sort_keys=True, default=str)
                            .encode()).hexdigest()[:32]
    return f"{head}:{digest}"


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
