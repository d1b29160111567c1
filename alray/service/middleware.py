"""The ASGI guard in front of every route: token first, then a bounded body.

FastAPI reads and parses a request body before it solves any dependency, so a token checked
in a dependency is checked too late: a client without one could make the replica buffer and
parse any body. :class:`GuardMiddleware` answers before any of the body is read:

1. ``/v1/...`` without a valid API token: 401/403 (the scope is left for the routes'
   dependencies in ``scope["state"]``);
2. a ``Content-Length`` above ``max_body_bytes``: 413;
3. then it reads the body, counting bytes (a chunked body has no length): 413 as soon as it
   passes the limit;
4. a JSON body nested deeper than :data:`MAX_JSON_DEPTH`: 422 (checked in NumPy, before
   Python's parser recurses into it).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from alray.service.deps import SCOPE_KEY, authenticate
from alray.service.errors import Invalid, ServiceError, TooLarge, error_body

__all__ = ["GuardMiddleware", "MAX_JSON_DEPTH", "json_too_deep"]

#: Deepest JSON nesting a request body may have (configs and webhook events need < 10).
MAX_JSON_DEPTH = 64
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STEP = np.zeros(256, np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if the brackets of ``body`` (outside strings) nest deeper than ``limit``.

    Vectorised: escapes are dropped, a byte lies inside a string when an odd number of
    quotes precede it, and the depth is the running sum of the brackets outside strings.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    raw = np.frombuffer(_ESCAPE.sub(b"", body) if b"\\" in body else body, np.uint8)
    at = np.flatnonzero(_STEP[raw])  # bracket positions
    outside = (np.cumsum(raw == ord('"'))[at] & 1) == 0
    return bool(outside.any()) and int(np.cumsum(_STEP[raw[at[outside]]]).max()) > limit


async def _answer(send, err: ServiceError) -> None:
    body = error_body(err)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if err.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if err.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Authenticate ``/v1`` requests and bound every body before the app sees it.

    Args:
        app: the ASGI app.
        state: the replica's :class:`~alray.service.state.ServiceState` (tokens, settings).
    """

    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        try:
            if scope["path"] == "/v1" or scope["path"].startswith("/v1/"):
                auth = headers.get(b"authorization", b"").decode("latin-1")
                scope.setdefault("state", {})[SCOPE_KEY] = authenticate(self.state, auth)
            receive = await self._bounded(scope, headers, receive)
        except ServiceError as err:
            return await _answer(send, err)
        return await self.app(scope, receive, send)

    async def _bounded(self, scope, headers: dict[bytes, bytes], receive):
        """The body read in full (at most ``max_body_bytes``) and replayed to the app."""
        limit = self.state.settings.max_body_bytes
        too_large = TooLarge(f"request body larger than {limit} bytes (ALRAY_MAX_BODY_BYTES)",
                             limit=limit)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise Invalid("Content-Length is not a number") from None
            if n > limit:
                raise too_large
            if n == 0:
                return receive
        elif b"transfer-encoding" not in headers:
            return receive  # no body
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away
                return _replay(b"", receive, msg)
            size += len(msg.get("body", b""))
            if size > limit:
                raise too_large
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").lower()
        if body and (not ctype or b"json" in ctype) and json_too_deep(body):
            raise Invalid(f"JSON body nested deeper than {MAX_JSON_DEPTH} levels")
        return _replay(body, receive)


def _replay(body: bytes, receive, first: dict | None = None):
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return first or {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
