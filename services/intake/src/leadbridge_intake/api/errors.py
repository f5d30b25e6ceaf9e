"""Error bodies that say what is wrong: ``{"error": <code>, "detail": <why>, ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .. import metrics


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers, self.extra = status, error, detail, headers, extra


def problem(status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=headers)


def field_errors(errors: list[dict[str, Any]], drop_prefix: tuple[str, ...] = ("body",)) -> list[dict[str, str]]:
    """Pydantic errors as ``[{"field": "email", "message": "..."}]``, without echoing the input values."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        while loc and loc[0] in drop_prefix:
            loc = loc[1:]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "(body)", "message": message, "type": str(err.get("type", ""))})
    return out


def validation_problem(exc: ValidationError | RequestValidationError) -> JSONResponse:
    errors = field_errors(list(exc.errors()))
    metrics.REJECTED.labels("validation").inc()
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "validation_failed", f"the request has invalid fields: {summary}", errors=errors)


PROBLEM_SCHEMA = {
    "title": "Problem", "type": "object", "required": ["detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"},
                   "errors": {"type": "array", "items": {"type": "object"}}},
}


def document_problem_bodies(app: FastAPI) -> None:
    """The OpenAPI document describes intake's own 422 body (``{"error", "detail", "errors"}``) for every
    route, those added later too, instead of FastAPI's ``{"detail": [...]}``, which intake never sends."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = PROBLEM_SCHEMA
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(exc.status, exc.error, exc.detail, exc.headers, **exc.extra)


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc)
