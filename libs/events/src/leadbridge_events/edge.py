"""Input every service refuses at the edge, before a parser or PostgreSQL chokes on it (a 4xx, never a 500).

- JSON nested deeper than ``MAX_JSON_DEPTH`` (``json.loads`` raises RecursionError near 1,000 levels): 400
  ``bad_json``. ``loads_json`` parses with that limit; ``JsonDepthAndNulGuard`` checks whole request bodies.
- NUL characters, which PostgreSQL cannot store in text or JSONB: 422 ``unstorable_characters`` (in the
  path, the query string or a JSON body).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

MAX_JSON_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.I)


class JsonTooDeep(ValueError):
    pass


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped); no recursion."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (JsonTooDeep, a ValueError)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if json_depth(data) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(data)


def has_nul(raw: bytes) -> bool:
    """A NUL byte, or a JSON ``\\u0000`` escape (not an escaped backslash followed by ``u0000``)."""
    return b"\x00" in raw or bool(_NUL_ESCAPE.search(raw))


def _problem(status: int, error: str, detail: str, where: str = "body") -> tuple[int, bytes]:
    """A 422's ``detail`` is a list of errors, as FastAPI's (and so every OpenAPI document's) 422 is."""
    body: dict[str, Any] = {"error": error, "detail": detail}
    if status == 422:
        body["detail"] = [{"loc": [where], "msg": detail, "type": "value_error"}]
    return status, json.dumps(body).encode()


class JsonDepthAndNulGuard:
    """Pure ASGI middleware: 400 for over-deep JSON bodies, 422 for NUL in the path, query or body."""

    def __init__(self, app: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    def _refusal(self, scope: Any, body: bytes | None) -> tuple[int, bytes] | None:
        target = scope.get("raw_path") or scope.get("path", "").encode()
        if b"\x00" in unquote_to_bytes(target) or b"\x00" in unquote_to_bytes(scope.get("query_string") or b""):
            return _problem(422, "unstorable_characters", "NUL characters cannot be stored; remove them", "query")
        if body is None:
            return None
        if has_nul(body):
            return _problem(422, "unstorable_characters", "NUL characters (\\u0000) cannot be stored; remove them")
        if json_depth(body) > self.max_depth:
            return _problem(400, "bad_json", f"the JSON body is nested deeper than {self.max_depth} levels")
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        body: bytes | None = None
        if scope.get("method") in ("POST", "PUT", "PATCH") and (
                content_type.endswith(b"json") or b"yaml" in content_type or not content_type):
            chunks = []
            while True:  # buffered: the services' JSON bodies are small
                message = await receive()
                chunks.append(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
            body = b"".join(chunks)
        refusal = self._refusal(scope, body)
        if refusal is not None:
            status, payload = refusal
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
