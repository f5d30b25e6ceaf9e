"""A pure ASGI fast path for intake's hot request: ``POST /v1/leads`` with a JSON body (a site's backend).

Under ``wrk`` about half of intake's CPU went to the layers FastAPI and Starlette put around the endpoint
(error and telemetry middleware, CORS, routing, solving the dependencies, an exit stack per request). This
path runs the very code the routed endpoint runs -- ``auth.authenticate`` (API key, scope, rate limit),
``leads.accept_lead`` and the app's own exception handlers (so a database outage is still a 503 with
``Retry-After``, an ``ApiError`` the same 4xx body) -- without those layers, and answers exactly what the
routed endpoint answers (``test_fast_path.py`` compares them).

It is in front of FastAPI itself (``install`` gives the app a subclass whose ``__call__`` looks first): not even
FastAPI's and Starlette's ``__call__`` (a telemetry check per request) run for it, nor ServerErrorMiddleware's
wrapping of ``send`` (an unexpected error still gets its 500, by the same middleware, and is re-raised).

Everything else takes the full stack: other routes and methods, form posts (redirects), requests with an
``Origin`` (a browser: CORS headers), and every request while tracing is on (a span per request).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request, Response
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
    """The hot request, for ``app`` (see ``install``); ``takes(scope)`` says whether a request is one."""

    def __init__(self, app: FastAPI, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes
        self.enabled: bool | None = None  # decided at the first request (tracing is set up at start-up)
        self.handlers: dict[Any, Any] = {}
        self.server_error: Any = None
        self.handled = 0  # for tests

    def takes(self, scope: dict[str, Any]) -> bool:
        if self.enabled is None:
            telemetry = getattr(self.app, "_native_telemetry", None)  # FastAPI's own (off unless configured)
            self.enabled = not tracing.enabled() and not (telemetry is not None and telemetry.enabled())
            handlers = self.app.exception_handlers
            self.handlers = {k: v for k, v in handlers.items() if k not in (500, Exception)}
            self.server_error = handlers.get(500) or handlers.get(Exception)
        return self.enabled and not self.app.root_path and _takes(scope)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = self.app  # as Starlette sets it (Request.app)
        raw = await self._body(scope, receive)
        if raw is None:  # http.disconnect: nobody to answer
            return
        if raw is TOO_LARGE:
            await reject_too_large(send, self.max_body_bytes)
            return
        self.handled += 1
        try:
            response = await self._respond(scope, receive, raw)
        except Exception as exc:  # unexpected: the server's 500 (and the traceback), as on the full stack
            await ServerErrorMiddleware(_raise(exc), handler=self.server_error, debug=self.app.debug)(
                scope, receive, send)
            raise  # (ServerErrorMiddleware re-raised it already)
        # ``Response.__call__``, its two messages straight to the server
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
        if response.background is not None:
            await response.background()

    async def _body(self, scope: Any, receive: Any) -> bytes | None:
        """The whole body; None when the client left, ``TOO_LARGE`` (unread, or as soon as seen) past the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return TOO_LARGE
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                return TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _respond(self, scope: Any, receive: Any, raw: bytes) -> Response:
        request = Request(scope, receive)
        request._body = raw  # what request.body() returns
        try:
            ctx = self.app.state.ctx
            return await accept_lead(request, ctx, await authenticate(request, ctx, "leads:write"), raw)
        except Exception as exc:
            handler = _lookup_exception_handler(self.handlers, exc)
            if handler is None:
                raise
            answer: Any = handler(request, exc)  # type: ignore[arg-type]
            response: Response = await answer if inspect.isawaitable(answer) else answer
            return response


TOO_LARGE = b"\x00 too large"  # a marker (compared by identity)


def _raise(exc: Exception) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise exc

    return app


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Put the fast path in front of ``app``: its class becomes a subclass whose ``__call__`` hands the hot
    request to the fast path and every other (and the lifespan) to FastAPI's own."""
    fast = LeadFastPath(app, max_body_bytes)
    app.state.lead_fast_path = fast
    base = type(app)

    async def call(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        if fast.takes(scope):
            await fast(scope, receive, send)
        else:
            await base.__call__(self, scope, receive, send)

    app.__class__ = type(f"{base.__name__}WithLeadFastPath", (base,), {"__call__": call})


def fast_path_of(app: FastAPI) -> LeadFastPath:
    return app.state.lead_fast_path  # type: ignore[no-any-return]
