"""Domain errors of the service and the one place they become HTTP responses.

Every error body is JSON: ``{"error": <kind>, "detail": <message>}``. A client's mistake is
a 4xx; only a fault of the service itself is a 500, and its body names no internals.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alray.config import ConfigError
from alray.rounds import IllegalTransition

__all__ = ["Conflict", "Forbidden", "Invalid", "NotFound", "ServiceError", "TooLarge",
           "Unauthorized", "Unavailable", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of errors that map to a 4xx status."""

    status = 400
    kind = "bad_request"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ServiceError):
    status, kind = 404, "not_found"


class Conflict(ServiceError):
    status, kind = 409, "conflict"


class Invalid(ServiceError):
    status, kind = 422, "invalid"


class Unauthorized(ServiceError):
    status, kind = 401, "unauthorized"


class Forbidden(ServiceError):
    status, kind = 403, "forbidden"


class TooLarge(ServiceError):
    status, kind = 413, "too_large"


class Unavailable(ServiceError):
    status, kind = 503, "unavailable"


def _body(kind: str, detail, **extra) -> dict:
    return jsonable_encoder({"error": kind, "detail": detail, **extra})


def error_body(err: ServiceError) -> bytes:
    """The JSON body of ``err`` (for answers given outside FastAPI, by the ASGI middleware)."""
    return json.dumps(_body(err.kind, err.detail, **err.extra)).encode()


def install_error_handlers(app: FastAPI) -> None:
    """Map domain exceptions (and FastAPI's own) to JSON responses, in one place."""

    @app.exception_handler(ServiceError)
    async def _service(_: Request, err: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(_body(err.kind, err.detail, **err.extra), err.status,
                            headers=headers)

    @app.exception_handler(ConfigError)
    async def _config(_: Request, err: ConfigError) -> JSONResponse:
        return JSONResponse(_body("invalid_config", str(err)), 422)

    @app.exception_handler(IllegalTransition)
    async def _transition(_: Request, err: IllegalTransition) -> JSONResponse:
        return JSONResponse(_body("conflict", str(err)), 409)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in err.errors()]
        return JSONResponse(_body("invalid", "request validation failed", errors=errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body("http_error", err.detail), err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(_body("internal", f"internal error ({type(err).__name__})"), 500)
