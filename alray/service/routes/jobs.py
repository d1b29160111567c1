"""Background jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from alray.service.deps import ReadScope, StateDep
from alray.service.schemas import JobPublic
from alray.service.state import ServiceState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_public(state: ServiceState, job: dict) -> JobPublic:
    """A job record as the API shows it: errors carry no absolute path of the server."""
    result = dict(job.get("result") or {})
    if result.get("failures"):
        result["failures"] = [dict(f, error=state.roots.scrub(f.get("error")))
                              for f in result["failures"]]
    return JobPublic(**{**job, "result": result, "error": state.roots.scrub(job.get("error"))})


@router.get("/{job_id}", response_model=JobPublic, responses={404: {}})
def get_job(state: StateDep, job_id: Annotated[str, Path(max_length=64)], _: ReadScope
            ) -> JobPublic:
    """A job's state, progress and error (read from the catalog: survives restarts)."""
    return job_public(state, state.job(job_id))
