"""Ad-platform webhooks: Meta Lead Ads, Google Ads lead forms, LinkedIn Lead Gen.

Each checks the platform's own signature or key on the raw body, then stores what it got before
answering 200: Meta and LinkedIn notifications go to the retrying fetcher; Google's full lead is captured.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from leadbridge_events.edge import loads_json

from .. import metrics
from ..capture import capture_in_transaction
from ..fetcher import enqueue_fetch
from ..normalize import strip_nul
from ..quarantine import Unusable, quarantine, validated
from ..ratelimit import retry_after_header
from ..reporting import ANSWER, record_result
from ..signatures import (
    SignatureProblem,
    check_google_key,
    linkedin_challenge,
    meta_handshake,
    verify_linkedin_signature,
    verify_meta_signature,
)
from .context import IntakeContext, get_ctx
from .errors import ApiError

log = logging.getLogger("leadbridge.intake.webhooks")


async def per_source_ip_limit(request: Request, ctx: IntakeContext = Depends(get_ctx)) -> None:
    """Webhooks carry no API key: their rate limit is per source address (before any signature check)."""
    source = request.client.host if request.client else "unknown"
    wait = ctx.webhook_limiter.take(source, ctx.monotonic())
    if wait > 0:
        metrics.REJECTED.labels("webhook_rate_limited").inc()
        raise ApiError(429, "rate_limited", "too many webhook requests from this address; retry later",
                       {"Retry-After": retry_after_header(wait)})


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(per_source_ip_limit)])
_AUTH = {401: {}, 403: {}, 413: {}, 422: {}, 429: {}}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _refuse(platform: str, problem: SignatureProblem) -> ApiError:
    metrics.REJECTED.labels(f"{platform}_signature").inc()
    return ApiError(problem.status, "bad_signature" if problem.status == 403 else "missing_signature",
                    problem.reason, platform=platform)


def _not_configured(what: str) -> ApiError:
    return ApiError(403, "not_configured", f"{what} is not configured on this intake")


def _json(raw: bytes) -> Any:
    try:
        return strip_nul(loads_json(raw))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


# -- Meta ------------------------------------------------------------------------------------------

@router.get("/meta", response_class=PlainTextResponse, responses=_AUTH)
async def meta_verify(ctx: IntakeContext = Depends(get_ctx), mode: str | None = Query(None, alias="hub.mode"),
                      token: str | None = Query(None, alias="hub.verify_token"),
                      challenge: str | None = Query(None, alias="hub.challenge")) -> PlainTextResponse:
    """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    if not ctx.settings.meta_verify_token:
        raise _not_configured("Meta (INTAKE_META_VERIFY_TOKEN)")
    try:
        return PlainTextResponse(meta_handshake(ctx.settings.meta_verify_token, mode, token, challenge))
    except SignatureProblem as exc:
        raise _refuse("meta", exc) from None


@router.post("/meta", responses=_AUTH)
async def meta_notify(request: Request, ctx: IntakeContext = Depends(get_ctx)) -> dict[str, int]:
    """Leadgen notifications signed with ``X-Hub-Signature-256``; each ``leadgen_id`` is queued for fetching."""
    if not ctx.settings.meta_app_secret:
        raise _not_configured("Meta (INTAKE_META_APP_SECRET)")
    raw = await request.body()
    try:
        verify_meta_signature(ctx.settings.meta_app_secret, raw, request.headers.get("x-hub-signature-256"))
    except SignatureProblem as exc:
        raise _refuse("meta", exc) from None
    body = _json(raw)
    ids: list[tuple[str, dict[str, Any]]] = []
    for entry in (body.get("entry") or []) if isinstance(body, dict) else []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if change.get("field") == "leadgen" and isinstance(value, dict) and value.get("leadgen_id"):
                ids.append((str(value["leadgen_id"]), value))
    return await _queue(ctx, "meta", ids)


async def _queue(ctx: IntakeContext, platform: str, ids: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    queued = 0
    async with ctx.runtime.sessions() as session, session.begin():
        for pid, notification in ids:
            queued += await enqueue_fetch(session, platform, pid, notification)
    if queued:
        ctx.fetcher.wake()
    if len(ids) - queued:
        metrics.DUPLICATES.labels(f"{platform}_id").inc(len(ids) - queued)
    log.info("platform notifications stored", extra={"platform": platform, "received": len(ids), "queued": queued})
    return {"received": len(ids), "queued": queued, "duplicates": len(ids) - queued}


# -- Google ----------------------------------------------------------------------------------------

@router.post("/google", responses=_AUTH)
async def google_lead(request: Request, ctx: IntakeContext = Depends(get_ctx)) -> JSONResponse:
    """A Google Ads lead form submission: ``google_key`` checked per form, ``user_column_data`` mapped. Google
    resends nothing after a 4xx, so a lead that fails validation is quarantined and answered 200."""
    body = _json(await request.body())
    if not isinstance(body, dict):
        raise ApiError(422, "validation_failed", "the body must be a JSON object")
    try:
        check_google_key(ctx.settings.google_keys, body.get("form_id"), body.get("google_key"))
    except SignatureProblem as exc:
        raise _refuse("google", exc) from None
    lead_id = body.get("lead_id")
    if not isinstance(lead_id, str) or not lead_id or len(lead_id) > 200:
        raise ApiError(422, "validation_failed", "lead_id is required",
                       errors=[{"field": "lead_id", "message": "required string up to 200 characters"}])
    is_test = bool(body.get("is_test"))
    try:
        submission, is_test = validated("google", body, region=ctx.settings.default_phone_region)
    except Unusable as problem:
        async with ctx.runtime.sessions() as session, session.begin():
            quarantine_id, row = await quarantine(session, "google", lead_id, body, problem)
        if row.status == "released":  # a redelivery of one re-processed since
            return JSONResponse({"lead_id": row.lead_id, "status": "duplicate", "is_test": is_test})
        return JSONResponse({"lead_id": None, "status": "quarantined", "quarantine_id": quarantine_id,
                             "reason": row.reason, "is_test": is_test})
    profile = submission.profile(source="google", is_test=is_test)
    result = await capture_in_transaction(ctx.runtime.transaction, profile, now=ctx.clock(),
                                          repeat_window=timedelta(hours=ctx.settings.repeat_window_hours),
                                          dedupe_scope="google", dedupe_key=lead_id)
    record_result(result, source="google", channel=profile.channel, dedupe_kind="google_id")
    return JSONResponse({"lead_id": result.lead_id, "status": ANSWER[result.outcome], "is_test": is_test})


# -- LinkedIn --------------------------------------------------------------------------------------

@router.get("/linkedin", responses=_AUTH)
async def linkedin_validate(ctx: IntakeContext = Depends(get_ctx),
                            challenge_code: str = Query(..., alias="challengeCode", max_length=36)
                            ) -> dict[str, str]:
    """LinkedIn's endpoint validation: answer the ``challengeCode`` (a UUID) with its HMAC-SHA256.

    Only UUIDs are answered: the same HMAC signs notifications, so answering any text would let anyone have
    a forged notification body signed here."""
    if not ctx.settings.linkedin_client_secret:
        raise _not_configured("LinkedIn (INTAKE_LINKEDIN_CLIENT_SECRET)")
    if not _UUID.fullmatch(challenge_code):
        metrics.REJECTED.labels("linkedin_challenge").inc()
        raise ApiError(422, "validation_failed", "challengeCode must be a UUID (LinkedIn sends UUIDs)",
                       errors=[{"field": "challengeCode", "message": "must be a UUID"}])
    return linkedin_challenge(ctx.settings.linkedin_client_secret, challenge_code)


def _linkedin_ids(body: Any) -> list[tuple[str, dict[str, Any]]]:
    items = body if isinstance(body, list) else [body]
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("leadAction", "CREATED") != "CREATED":
            continue
        urn = item.get("leadGenFormResponse")
        if isinstance(urn, str) and urn:
            out.append((urn.removeprefix("urn:li:leadGenFormResponse:"), item))
    return out


@router.post("/linkedin", responses=_AUTH)
async def linkedin_notify(request: Request, ctx: IntakeContext = Depends(get_ctx)) -> dict[str, int]:
    """Lead notifications signed with ``X-LI-Signature``; each form response id is queued for fetching."""
    if not ctx.settings.linkedin_client_secret:
        raise _not_configured("LinkedIn (INTAKE_LINKEDIN_CLIENT_SECRET)")
    raw = await request.body()
    try:
        verify_linkedin_signature(ctx.settings.linkedin_client_secret, raw, request.headers.get("x-li-signature"))
    except SignatureProblem as exc:
        raise _refuse("linkedin", exc) from None
    return await _queue(ctx, "linkedin", _linkedin_ids(_json(raw)))
