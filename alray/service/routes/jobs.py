"""Background jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from alray.service.deps import Auth, StateDep
from alray.service.schemas import JobPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Auth])


@router.get("/{job_id}", response_model=JobPublic, responses={404: {}})
def get_job(state: StateDep, job_id: Annotated[str, Path(max_length=64)]) -> JobPublic:
    """A job's state, progress and error (read from the catalog: survives restarts)."""
    return JobPublic(**state.job(job_id))
