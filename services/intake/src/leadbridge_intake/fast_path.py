"""A pure ASGI fast path for intake's hot request: ``POST /v1/leads`` with a JSON body (a site's backend).

Under ``wrk`` about half of intake's CPU went to the layers FastAPI and Starlette put around the endpoint
(error and telemetry middleware, CORS, routing, solving the dependencies, an exit stack per request). This
path runs the very code the routed endpoint runs -- ``auth.authenticate`` (API key, scope, rate limit),
``leads.accept_lead`` and the app's own exception handlers (so a database outage is still a 503 with
``Retry-After``, an ``ApiError`` the same 4xx body) -- without those layers, and answers exactly what the
routed endpoint answers (``test_fast_path.py`` compares them).

Everything else takes the full stack: other routes and methods, form posts (redirects), requests with an
``Origin`` (a browser: CORS headers), and every request while tracing is on (a span per request).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request
from leadbridge_events import tracing
from starlette._exception_handler import _lookup_exception_handler
from starlette.middleware.errors import ServerErrorMiddleware

from .api.auth import authenticate
from .api.leads import accept_lead
from .middleware import reject_too_large

PATH = "/v1/leads"
JSON = b"application/json"


def _takes(scope: dict[str, Any]) -> bool:
    """A JSON ``POST /v1/leads`` without an ``Origin`` header, not behind a root path."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH or scope.get("root_path"):
        return False
    json = False
    for name, value in scope["headers"]:
        if name == b"origin":
            return False
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            json = kind == JSON or kind.endswith(b"+json")
    return json


class LeadFastPath:
    """Wraps the app's middleware stack (``install``): the hot request here, every other one to ``stack``."""

    def __init__(self, app: FastAPI, stack: Any, max_body_bytes: int) -> None:
        self.app, self.stack, self.max_body_bytes = app, stack, max_body_bytes
        telemetry = getattr(app, "_native_telemetry", None)  # FastAPI's own (off unless configured)
        self.enabled = not tracing.enabled() and not (telemetry is not None and telemetry.enabled())
        self.handlers = {k: v for k, v in app.exception_handlers.items() if k not in (500, Exception)}
        # an unexpected error: the server's 500 and its traceback, as on the full stack
        self.errors = ServerErrorMiddleware(self._handle, handler=app.exception_handlers.get(500)
                                            or app.exception_handlers.get(Exception), debug=app.debug)
        self.handled = 0  # for tests

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.enabled and _takes(scope):
            await self.errors(scope, receive, send)
        else:
            await self.stack(scope, receive, send)

    async def _body(self, scope: Any, receive: Any, send: Any) -> bytes | None:
        """The whole body, or None when the client left or the body is too large (then answered 413)."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await reject_too_large(send, self.max_body_bytes)
                return None
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nobody to answer
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                await reject_too_large(send, self.max_body_bytes)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _handle(self, scope: Any, receive: Any, send: Any) -> None:
        raw = await self._body(scope, receive, send)
        if raw is None:
            return
        self.handled += 1
        request = Request(scope, receive)
        request._body = raw  # what request.body() returns
        try:
            ctx = self.app.state.ctx
            response = await accept_lead(request, ctx, await authenticate(request, ctx, "leads:write"), raw)
        except Exception as exc:
            handler = _lookup_exception_handler(self.handlers, exc)  # type: ignore[arg-type]
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Put the fast path in front of ``app``'s middleware stack (built at the first request)."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: LeadFastPath(app, build(), max_body_bytes)  # type: ignore[method-assign]
