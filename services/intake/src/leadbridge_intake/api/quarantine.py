"""The quarantine admin API: list platform leads kept in quarantine, show one, re-process one or all.

Protected like the rest of ``/v1/admin`` (``require_admin``). A listing never shows raw payloads (they hold
personal data); ``GET /v1/admin/quarantine/{id}`` does, for the operator who fixes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, field_validator

from .. import quarantine as q
from ..reporting import ANSWER
from .admin import require_admin
from .context import IntakeContext, get_ctx
from .errors import ApiError

router = APIRouter(prefix="/v1/admin/quarantine", tags=["admin"], dependencies=[Depends(require_admin)])


class QuarantinedView(BaseModel):
    quarantine_id: str
    platform: str
    platform_lead_id: str
    reason: str = Field(description=f"One of {', '.join(q.REASONS)}.")
    errors: list[dict[str, str]] = Field(description="Which fields failed and why (never their values).")
    status: str = Field(description="quarantined | released")
    attempts: int
    lead_id: str | None = None
    received_at: str
    updated_at: str
    raw: dict[str, Any] | None = Field(default=None, description="The payload as delivered (GET of one only).")


def _view(row: Any, *, raw: bool = False) -> QuarantinedView:
    return QuarantinedView(quarantine_id=row.id, platform=row.platform, platform_lead_id=row.platform_lead_id,
                           reason=row.reason, errors=row.errors, status=row.status, attempts=row.attempts,
                           lead_id=row.lead_id, received_at=row.received_at.isoformat(),
                           updated_at=row.updated_at.isoformat(), raw=row.raw if raw else None)


class ReprocessRequest(BaseModel):
    corrections: dict[str, str] = Field(default_factory=dict, description=(
        "Field values to use instead of the mapped ones, by form field name (phone, country, custom[x], ...)."))

    @field_validator("corrections")
    @classmethod
    def _bounded(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 50 or any(len(k) > 100 or len(val) > 2000 for k, val in v.items()):
            raise ValueError("at most 50 corrections, keys up to 100 and values up to 2000 characters")
        return v


@router.get("", response_model=list[QuarantinedView], responses={401: {}, 403: {}})
async def index(ctx: IntakeContext = Depends(get_ctx),
                status: Literal["quarantined", "released", "all"] = Query("quarantined"),
                platform: Literal["meta", "linkedin", "google"] | None = Query(None),
                limit: int = Query(100, ge=1, le=1000)) -> list[QuarantinedView]:
    """Quarantined platform leads, oldest first (``status=all`` includes released ones)."""
    async with ctx.runtime.sessions() as session:
        rows = await q.list_quarantined(session, status=None if status == "all" else status, platform=platform,
                                        limit=limit)
    return [_view(r) for r in rows]


@router.get("/{quarantine_id}", response_model=QuarantinedView, responses={401: {}, 403: {}, 404: {}})
async def show(quarantine_id: str, ctx: IntakeContext = Depends(get_ctx)) -> QuarantinedView:
    async with ctx.runtime.sessions() as session:
        rows = await q.list_quarantined(session, status=None, platform=None, limit=1, quarantine_id=quarantine_id)
    if not rows:
        raise ApiError(404, "not_found", "no quarantined lead with this id")
    return _view(rows[0], raw=True)


async def _reprocess(ctx: IntakeContext, quarantine_id: str, corrections: dict[str, str]) -> q.Reprocessed | None:
    async with ctx.runtime.transaction() as tx:
        return await q.reprocess(tx, quarantine_id, now=ctx.clock(), region=ctx.settings.default_phone_region,
                                 repeat_window=timedelta(hours=ctx.settings.repeat_window_hours),
                                 corrections=corrections or None)


@router.post("/{quarantine_id}/reprocess", responses={401: {}, 403: {}, 404: {}, 422: {}})
async def reprocess_one(quarantine_id: str, body: ReprocessRequest | None = None,
                        ctx: IntakeContext = Depends(get_ctx)) -> dict[str, Any]:
    """Map and validate the stored payload again (with ``corrections``) and capture it as a lead. Idempotent:
    a released one answers its lead. Still unusable: 422 with the fields, and it stays quarantined."""
    done = await _reprocess(ctx, quarantine_id, (body or ReprocessRequest()).corrections)
    if done is None:
        raise ApiError(404, "not_found", "no quarantined lead with this id")
    if done.problem is not None:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in done.problem.errors[:5])
        raise ApiError(422, "still_invalid", f"the lead is still unusable ({done.problem.reason}): {summary}",
                       quarantine_id=quarantine_id, reason=done.problem.reason, errors=done.problem.errors)
    status = "already_released" if done.outcome == "already_released" else ANSWER[done.outcome or "captured"]
    return {"quarantine_id": quarantine_id, "status": status, "lead_id": done.lead_id}


@router.post("/reprocess", responses={401: {}, 403: {}})
async def reprocess_all(ctx: IntakeContext = Depends(get_ctx),
                        platform: Literal["meta", "linkedin", "google"] | None = Query(None),
                        limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
    """Re-process every quarantined lead (of ``platform``), e.g. after a field-mapping change; one
    transaction each. Answers how many became leads and which are still quarantined (and why)."""
    async with ctx.runtime.sessions() as session:
        ids = [r.id for r in await q.list_quarantined(session, status=q.QUARANTINED, platform=platform, limit=limit)]
    released, still = [], []
    for quarantine_id in ids:
        done = await _reprocess(ctx, quarantine_id, {})
        if done is not None and done.problem is None:
            released.append({"quarantine_id": quarantine_id, "lead_id": done.lead_id})
        elif done is not None and done.problem is not None:
            still.append({"quarantine_id": quarantine_id, "reason": done.problem.reason})
    await ctx.fetcher.refresh_gauges()
    return {"released": released, "still_quarantined": still}
