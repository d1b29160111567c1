"""The FastAPI application: routers, error mapping, OpenAPI."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from alray.service import routes
from alray.service.errors import install_error_handlers
from alray.service.middleware import GuardMiddleware
from alray.service.state import ServiceState

__all__ = ["create_api"]


def _operation_id(route: APIRoute) -> str:
    """Stable OpenAPI operation ids (``<tag>-<function>``) for generated clients."""
    return f"{route.tags[0] if route.tags else 'default'}-{route.name}"


def create_api(state: ServiceState) -> FastAPI:
    """Build the ASGI app around a replica's state.

    Args:
        state: what the replica holds (settings, catalog, caches, job runner handle).
    """
    app = FastAPI(title="alray", version="1", summary="Active-learning rounds over HTTP.",
                  generate_unique_id_function=_operation_id)
    app.state.alray = state
    app.add_middleware(GuardMiddleware, state=state)  # token and body limit, before parsing
    install_error_handlers(app)
    for mod in (routes.health, routes.projects, routes.jobs, routes.rounds, routes.labels,
                routes.frames):
        app.include_router(mod.router)
    return app
