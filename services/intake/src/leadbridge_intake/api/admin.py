"""The admin API: create, list and revoke API keys. Needs an access token with the ``keys:admin`` scope."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends
from leadbridge_events.auth import require_scopes
from pydantic import BaseModel, Field

from ..keys import DEFAULT_SCOPES, SCOPES, create_key, list_keys, revoke_key
from .context import IntakeContext, get_ctx
from .errors import ApiError

router = APIRouter(prefix="/v1/admin", tags=["admin"])


require_admin = require_scopes("keys:admin")


class KeyRequest(BaseModel):
    source: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
                        description="The source this key belongs to, e.g. web_form, website, hubspot.")
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES),
                              description=f"Any of {', '.join(SCOPES)}; by default only {', '.join(DEFAULT_SCOPES)}.")
    description: str | None = Field(default=None, max_length=500)


class KeyView(BaseModel):
    key_id: str
    source: str
    scopes: list[str]
    revoked: bool = False
    api_key: str | None = Field(default=None, description="The secret, shown once at creation.")


@router.post("/keys", status_code=201, response_model=KeyView, dependencies=[Depends(require_admin)],
             responses={401: {}, 403: {}, 422: {}})
async def create(body: KeyRequest, ctx: IntakeContext = Depends(get_ctx)) -> KeyView:
    try:
        async with ctx.runtime.sessions() as session, session.begin():
            secret, key = await create_key(session, body.source, body.scopes, body.description)
    except ValueError as exc:
        raise ApiError(422, "validation_failed", str(exc), errors=[{"field": "scopes", "message": str(exc)}]) from None
    ctx.keys.forget_unknown()  # it may have been tried before it existed
    return KeyView(key_id=key.id, source=key.source, scopes=sorted(key.scopes), api_key=secret)


@router.get("/keys", response_model=list[KeyView], dependencies=[Depends(require_admin)], responses={401: {}, 403: {}})
async def index(ctx: IntakeContext = Depends(get_ctx)) -> list[KeyView]:
    async with ctx.runtime.sessions() as session:
        keys = await list_keys(session)
    return [KeyView(key_id=k.id, source=k.source, scopes=sorted(k.scopes), revoked=k.revoked_at is not None)
            for k in keys]


@router.delete("/keys/{key_id}", dependencies=[Depends(require_admin)], responses={401: {}, 403: {}, 404: {}})
async def revoke(key_id: str, ctx: IntakeContext = Depends(get_ctx)) -> dict[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,20}", key_id):
        raise ApiError(404, "key_not_found", "no API key with this id")
    async with ctx.runtime.sessions() as session, session.begin():
        done = await revoke_key(session, key_id)
    ctx.keys.forget(key_id)
    if not done:
        raise ApiError(404, "key_not_found", f"no active API key with id {key_id}")
    return {"key_id": key_id, "status": "revoked"}
