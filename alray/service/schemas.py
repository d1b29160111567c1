"""Request and response schemas of the HTTP API (never storage rows)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "FramePublic", "JobPublic", "LabelIn", "LabelOut", "LabelsPublic", "LabelsSubmit",
    "LabelStudioEvent", "ProjectPublic", "RoundPublic", "RoundStart", "RoundStartPublic",
    "RoundsPublic", "SelectionPage", "Status",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Status(BaseModel):
    """Health or readiness."""

    status: Literal["ok", "ready", "not_ready"]
    detail: str | None = None


class ProjectPublic(BaseModel):
    """A project as the API shows it."""

    name: str
    storage_path: str | None = Field(description="The project's store: relative to the "
                                     "service root (or a data root), an s3:// URI, or "
                                     "'<path>'; never an absolute path of the server.")
    created_at: float
    config: dict[str, Any] = Field(description="The project config (ProjectConfig as JSON; "
                                   "locations shown like storage_path).")
    classes: list[str] = Field(description="Class names, index = label (empty before ingest).")
    frames: dict[str, int] = Field(description="Frame counts by status (pool split) and by "
                                   "split.")
    rounds: int = Field(description="Number of rounds so far.")
    latest_round: int | None = None
    latest_state: str | None = None


class JobPublic(BaseModel):
    """A background job (ingest or round)."""

    job_id: str
    project: str
    kind: Literal["ingest", "round"]
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: dict[str, Any] = Field(description="ingest: frames done/total; round: round "
                                     "number and state.")
    params: dict[str, Any]
    result: dict[str, Any]
    error: str | None = None
    attempts: int
    created_at: float
    updated_at: float


class RoundStart(_Request):
    """Start (or resume) the next round."""

    force: bool = Field(False, description="Train on the open round even though some of its "
                        "selected frames are still unlabeled.")
    strategy: str | None = Field(None, max_length=100, description="Override the config's "
                                 "acquisition.strategy for this run.")


class RoundPublic(BaseModel):
    """One round: state, selection, timings, metrics and diagnostics."""

    round: int
    state: str
    strategy: str | None
    batch_size: int | None
    selected: int = Field(description="Frames selected in this round.")
    labeled: int = Field(description="Of those, frames labeled so far.")
    checkpoint_uri: str | None = None
    metrics: dict[str, Any]
    diagnostics: dict[str, Any]
    timings: dict[str, float] = Field(description="Seconds per step (seeding, scoring, …).")
    stop_reason: str | None = None
    error: str | None = None
    started_at: float | None = None
    updated_at: float | None = None


class RoundsPublic(BaseModel):
    data: list[RoundPublic]
    count: int


class RoundStartPublic(BaseModel):
    job: JobPublic
    next_round: int = Field(description="The round this job works on first.")


class SelectionPage(BaseModel):
    """A page of a round's selection in an export format."""

    round: int
    format: Literal["jsonl", "label-studio", "coco"]
    total: int = Field(description="Frames in the whole selection.")
    count: int
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null "
                                    "on the last page.")
    items: list[dict[str, Any]]
    categories: list[dict[str, Any]] | None = Field(None, description="COCO categories.")


class LabelIn(_Request):
    frame_id: str = Field(min_length=1, max_length=1000)
    label: Annotated[StrictInt, Field(ge=-(2**31), le=2**31)] | Annotated[
        StrictStr, Field(max_length=200)] = Field(
        description="Class index (a JSON integer), or a class name of the project; a string of "
        "ASCII digits is an index too. true/false, floats and non-ASCII digits are refused.")
    idempotency_key: str | None = Field(None, max_length=200, description="Retries with the "
                                        "same key are accepted once; the key reused for another "
                                        "frame or label is a conflict.")

    @field_validator("label", mode="before")
    @classmethod
    def _strict_label(cls, v: Any, info: ValidationInfo) -> Any:
        """Refuse what only looks like a label, naming the frame (the loc names the index)."""
        where = f"frame_id {info.data.get('frame_id')!r}"
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ValueError(f"{where}: label must be a class index (integer) or a class name "
                             f"(string), not {type(v).__name__} {repr(v)[:40]}")
        if isinstance(v, int) and not -(2**31) <= v <= 2**31:
            raise ValueError(f"{where}: label {v} is out of range (at most {2**31})")
        if isinstance(v, str) and v.isnumeric() and not (
                v.isascii() and v.isdigit() and len(v) <= 10 and int(v) <= 2**31):
            raise ValueError(f"{where}: label {v[:40]!r} is not a class index: use ASCII digits "
                             f"0-9, at most {2**31}")
        return v


class LabelsSubmit(_Request):
    labels: list[LabelIn] = Field(min_length=1, max_length=10_000)
    overwrite: bool = Field(False, description="Replace a different existing label instead of "
                            "reporting a conflict.")


class LabelOut(BaseModel):
    frame_id: str
    status: Literal["accepted", "duplicate", "conflict", "rejected"]
    reason: str | None = None


class LabelsPublic(BaseModel):
    """Per-item outcome of a label submission, in request order."""

    accepted: int
    duplicate: int
    conflict: int
    rejected: int
    results: list[LabelOut]


class LabelStudioEvent(BaseModel):
    """A Label Studio webhook payload (ANNOTATION_CREATED / ANNOTATION_UPDATED)."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(max_length=100)
    task: dict[str, Any] | None = None
    annotation: dict[str, Any] | None = None


class FramePublic(BaseModel):
    frame_id: str
    source_uri: str | None = Field(description="Relative to its data root, an s3:// URI, or "
                                   "'<path>'.")
    source_id: str | None
    frame_index: int | None
    timestamp_ms: int | None
    split: str | None
    status: str | None
    label: int | None
    label_name: str | None
    selected_round: int | None
    labeled_round: int | None
    score: float | None
    error: str | None
    url: str = Field(description="Signed or presigned URL of the frame's image.")


class SimilarFrame(BaseModel):
    frame_id: str
    source_id: str | None
    source_uri: str | None = Field(description="Relative to its data root, an s3:// URI, or "
                                   "'<path>'.")
    frame_index: int | None
    timestamp_ms: int | None
    split: str | None
    status: str | None
    score: float | None
    similarity: float = Field(description="Cosine similarity to the query frame (1 = same).")


class SimilarFrames(BaseModel):
    frame_id: str = Field(description="The query frame.")
    data: list[SimilarFrame] = Field(description="Most similar first.")
    count: int
