"""FastAPI dependencies: the replica state, the current project, and scoped bearer auth.

Every ``/v1`` route declares the scope it needs with one of :data:`ReadScope`,
:data:`LabelScope` or :data:`AdminScope` (see :mod:`alray.service.settings`). The token itself
is checked earlier, by :class:`~alray.service.middleware.GuardMiddleware`, before the request
body is read; the dependency then only compares scopes (and checks the token itself where no
middleware ran).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alray.service.errors import Forbidden, Unauthorized
from alray.service.settings import SCOPES, token_scope
from alray.service.state import Project, ServiceState

__all__ = ["AdminScope", "Auth", "LabelScope", "ProjectDep", "ReadScope", "StateDep",
           "authenticate", "require_scope", "require_token"]

_bearer = HTTPBearer(auto_error=False, description="A token from ALRAY_API_TOKENS "
                     "(scopes: read, label, admin).")
#: Where the middleware leaves the scope of the request's token (in ``scope["state"]``).
SCOPE_KEY = "alray_scope"


async def _state(request: Request) -> ServiceState:
    return request.app.state.alray


StateDep = Annotated[ServiceState, Depends(_state)]


def authenticate(state: ServiceState, authorization: str | None) -> str:
    """The scope of the bearer token in an ``Authorization`` header (the token is never
    logged).

    Raises:
        Unauthorized: no bearer token (401).
        Forbidden: a token that is not one of ALRAY_API_TOKENS (403).
    """
    kind, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scope = token_scope(token, state.tokens)
    if scope not in SCOPES:  # unknown, or the metrics token (valid on /metrics only)
        raise Forbidden("invalid token")
    return scope


def require_scope(needed: str):
    """A dependency accepting only tokens whose scope includes ``needed``."""

    async def check(request: Request, state: StateDep,
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                    ) -> str:
        scope = request.scope.get("state", {}).get(SCOPE_KEY)
        if scope is None:
            scope = authenticate(state, request.headers.get("authorization"))
        if SCOPES.index(scope) < SCOPES.index(needed):
            raise Forbidden(f"this request needs a token with scope {needed!r} (this one has "
                            f"{scope!r}); scopes are set in ALRAY_API_TOKENS as "
                            f"'{needed}:<token>'", needed_scope=needed)
        return scope

    check.__name__ = f"require_{needed}"
    return check


#: GET routes: any API token.
ReadScope = Annotated[str, Depends(require_scope("read"))]
#: Reading selections, posting labels and webhooks: ``label`` or ``admin`` tokens.
LabelScope = Annotated[str, Depends(require_scope("label"))]
#: Creating projects, starting ingests and rounds: ``admin`` tokens.
AdminScope = Annotated[str, Depends(require_scope("admin"))]

#: Any valid API token (a router-level dependency).
Auth = Depends(require_scope("read"))
require_token = require_scope("read")

ProjectName = Annotated[str, Path(min_length=1, max_length=64, description="Project name.")]


async def _project(state: StateDep, project: ProjectName) -> Project:
    """The open project (a dict hit on the event loop; opened in a worker thread once)."""
    return state.open_project(project) or await run_in_threadpool(state.project, project)


ProjectDep = Annotated[Project, Depends(_project)]
