"""FastAPI dependencies: the replica state, the current project, and bearer auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alray.service.errors import Forbidden, Unauthorized
from alray.service.settings import token_matches
from alray.service.state import Project, ServiceState

__all__ = ["Auth", "ProjectDep", "StateDep", "require_token"]

_bearer = HTTPBearer(auto_error=False, description="A token from ALRAY_API_TOKENS.")


async def _state(request: Request) -> ServiceState:
    return request.app.state.alray


StateDep = Annotated[ServiceState, Depends(_state)]


async def require_token(state: StateDep, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                    Depends(_bearer)]) -> None:
    """Accept the request only with a valid bearer token (the token is never logged).

    Raises:
        Unauthorized: no bearer token (401).
        Forbidden: a token that is not one of ALRAY_API_TOKENS (403).
    """
    if creds is None or not creds.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if not token_matches(creds.credentials, state.token_digests):
        raise Forbidden("invalid token")


Auth = Depends(require_token)

ProjectName = Annotated[str, Path(min_length=1, max_length=64, description="Project name.")]


async def _project(state: StateDep, project: ProjectName) -> Project:
    """The open project (a dict hit on the event loop; opened in a worker thread once)."""
    return state.open_project(project) or await run_in_threadpool(state.project, project)


ProjectDep = Annotated[Project, Depends(_project)]
