"""``POST /v1/leads`` (JSON or a browser's form post), ``GET /v1/leads/{id}``, and CRM follow-ups."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged
from leadbridge_events.edge import MAX_JSON_DEPTH, loads_json
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update

from .. import metrics
from ..capture import SOURCE, CaptureResult, capture_in_transaction, claim_or_replay, get_lead
from ..followups import FollowUpConflict, FollowUpRequest, check_can_follow_up, is_final, status_after
from ..keys import ApiKey
from ..normalize import is_uuid
from ..reporting import ANSWER, record_result
from ..submission import FORM_CONTROL_FIELDS, NUL_FREE, LeadSubmission, from_flat_fields, nul_free
from ..tables import follow_ups, leads
from .auth import require
from .context import IntakeContext, get_ctx
from .errors import ApiError, validation_problem

log = logging.getLogger("leadbridge.intake.leads")
router = APIRouter(tags=["leads"])

FORM = "application/x-www-form-urlencoded"
_schema = LeadSubmission.model_json_schema(ref_template="#/components/schemas/{model}")
_LEAD_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _schema},
    FORM: {"schema": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "Flat form fields: the JSON fields, utm_*, custom[name]; unknown fields "
                                     "become custom fields. The honeypot field must stay empty."}},
}}}


class Accepted(BaseModel):
    lead_id: str
    status: str  # accepted | activity_recorded | duplicate


class FollowUpAccepted(BaseModel):
    lead_id: str
    follow_up_id: str | None
    status: str


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (1 <= len(key) <= 200):
        raise ApiError(422, "validation_failed", "Idempotency-Key must be 1 to 200 characters",
                       errors=[{"field": "Idempotency-Key", "message": "must be 1 to 200 characters"}])
    return key


def _reused(idem: str) -> ApiError:
    """The IETF Idempotency-Key draft: a key reused with a different request is a client error (422)."""
    metrics.REJECTED.labels("idempotency_key_reused").inc()
    return ApiError(422, "idempotency_key_reused", "this Idempotency-Key was already used with a different "
                    "request body; use a new key for a new request",
                    errors=[{"field": "Idempotency-Key", "message": "already used with another body"}])


def fingerprint(content_type: str, raw: bytes) -> str:
    return hashlib.sha256(content_type.encode() + b"\n" + raw).hexdigest()


def _redirect_target(ctx: IntakeContext, fields: dict[str, str]) -> str | None:
    wanted = fields.get("_redirect")
    if wanted:
        parts = urlsplit(wanted)
        if f"{parts.scheme}://{parts.netloc}" in ctx.settings.cors_origins:
            return wanted
    return ctx.settings.thank_you_url


def _parse_body(ctx: IntakeContext, content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The submission input and, for a form post, its raw fields (None for JSON)."""
    if content_type == FORM:
        try:
            fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "bad_form", f"the form body cannot be read: {type(exc).__name__}") from None
        ignore = FORM_CONTROL_FIELDS | {ctx.settings.honeypot_field}
        return from_flat_fields(fields, ignore=ignore), fields
    if content_type in ("application/json", "") or content_type.endswith("+json"):
        try:
            # fewer brackets than the depth limit cannot nest deeper: json.loads alone, no depth scan
            shallow = raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH
            data = json.loads(raw) if raw and shallow else loads_json(raw or b"null")
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "validation_failed", "the body must be a JSON object",
                           errors=[{"field": "(body)", "message": "must be a JSON object"}])
        return data, None
    raise ApiError(415, "unsupported_media_type", f"send application/json or {FORM}, not {content_type}")


@router.post("/v1/leads", status_code=202, response_model=Accepted, openapi_extra=_LEAD_BODY,
             responses={401: {}, 403: {}, 409: {}, 413: {}, 415: {}, 422: {}, 429: {}})
async def post_lead(request: Request, ctx: IntakeContext = Depends(get_ctx),
                    key: ApiKey = Depends(require("leads:write"))) -> Response:
    """Capture a lead. 202 with its id; a repeat person answers with the existing lead's id."""
    return await accept_lead(request, ctx, key, await request.body())


async def accept_lead(request: Request, ctx: IntakeContext, key: ApiKey, raw: bytes) -> Response:
    """``POST /v1/leads`` once authenticated, for the routed endpoint and the fast path (fast_path.py) alike."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data, form = _parse_body(ctx, content_type, raw)
    idem = _idempotency_key(request)
    if form is not None and form.get(ctx.settings.honeypot_field):
        metrics.REJECTED.labels("honeypot").inc()
        log.info("honeypot filled; dropped", extra={"api_key": key.id})
        return _answer(ctx, form, CaptureResult(str(uuid.uuid4()), "captured"))
    try:
        context = {"region": ctx.settings.default_phone_region, NUL_FREE: form is None and nul_free(raw)}
        submission = LeadSubmission.model_validate(data, context=context)
    except ValidationError as exc:
        return validation_problem(exc)
    profile = submission.profile(source=key.source)
    store = ctx.captures.capture if ctx.captures else partial(capture_in_transaction, ctx.runtime.transaction)
    result = await store(profile, now=ctx.clock(), repeat_window=timedelta(hours=ctx.settings.repeat_window_hours),
                         dedupe_scope=f"key:{key.id}" if idem else None, dedupe_key=idem,
                         fingerprint=fingerprint(content_type, raw) if idem else None)
    if result.outcome == "key_reused":
        raise _reused(str(idem))
    record_result(result, source=key.source, channel=profile.channel, dedupe_kind="idempotency_key")
    return _answer(ctx, form, result)


def _answer(ctx: IntakeContext, form: dict[str, str] | None, result: CaptureResult) -> Response:
    if form is not None:
        target = _redirect_target(ctx, form)
        if target:
            return RedirectResponse(target, status_code=303)
    return Accepted202(result.lead_id, ANSWER[result.outcome], replayed=result.outcome == "duplicate")


class Accepted202(Response):
    """``JSONResponse({"lead_id": lead_id, "status": status}, 202, headers={"Location": ..., ["Idempotent-Replayed":
    "true"]})``, the same body and headers, without its generic rendering and header building (5 of ~8 us)."""

    media_type = "application/json"

    def __init__(self, lead_id: str, status: str, *, replayed: bool = False) -> None:
        self.status_code, self.background = 202, None
        self.body = b'{"lead_id":%s,"status":%s}' % (_text(lead_id).encode(), _text(status).encode())
        location = f"/v1/leads/{lead_id}".encode("latin-1")
        self.raw_headers = [(b"location", location), *_REPLAYED[replayed],
                            (b"content-length", b"%d" % len(self.body)), (b"content-type", b"application/json")]


_text = json.encoder.encode_basestring  # a JSON string, as json.dumps(ensure_ascii=False)
_REPLAYED: dict[bool, list[tuple[bytes, bytes]]] = {False: [], True: [(b"idempotent-replayed", b"true")]}


@router.get("/v1/leads/{lead_id}", responses={401: {}, 403: {}, 404: {}})
async def read_lead(lead_id: str, ctx: IntakeContext = Depends(get_ctx),
                    _key: ApiKey = Depends(require("leads:read"))) -> dict[str, Any]:
    """The captured data, the current status and the follow-ups of one lead."""
    if not is_uuid(lead_id):
        raise ApiError(404, "lead_not_found", "no lead with this id (lead ids are UUIDs)")
    async with ctx.runtime.sessions() as session:
        lead = await get_lead(session, lead_id)
        if lead is None:
            raise ApiError(404, "lead_not_found", f"no lead with id {lead_id}")
        touches = (await session.execute(select(follow_ups).where(follow_ups.c.lead_id == lead_id)
                                         .order_by(follow_ups.c.occurred_at).limit(200))).mappings().all()
    return {
        "lead_id": lead["id"], "status": lead["status"], "final_outcome": lead["final_outcome"],
        "captured_at": lead["created_at"], "last_activity_at": lead["last_activity_at"],
        "activity_count": lead["activity_count"], "is_test": lead["is_test"], "source": lead["source"],
        "profile": lead["profile"], "status_detail": lead["status_detail"],
        "follow_ups": [{"follow_up_id": t["id"], "touch_type": t["touch_type"], "outcome": t["outcome"],
                        "actor": t["actor"], "occurred_at": t["occurred_at"], **t["details"]} for t in touches],
    }


@router.post("/v1/leads/{lead_id}/follow-ups", status_code=202, response_model=FollowUpAccepted,
             responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 429: {}})
async def post_follow_up(lead_id: str, body: FollowUpRequest, request: Request,
                         ctx: IntakeContext = Depends(get_ctx),
                         key: ApiKey = Depends(require("followups:write"))) -> FollowUpAccepted:
    """Log a touch and its outcome; publishes follow-up-logged. 404 unknown lead, 409 after won/lost."""
    if not is_uuid(lead_id):
        raise ApiError(404, "lead_not_found", "no lead with this id (lead ids are UUIDs)")
    idem = _idempotency_key(request)
    now = ctx.clock()
    follow_up_id = str(uuid.uuid4())
    async with ctx.runtime.transaction() as tx:
        session = tx.session
        lead = (await session.execute(select(leads.c.status, leads.c.final_outcome)
                                      .where(leads.c.id == lead_id).with_for_update())).first()
        if lead is None:
            raise ApiError(404, "lead_not_found", f"no lead with id {lead_id}")
        if idem:
            replay = await claim_or_replay(session, f"followup:{key.id}", idem, lead_id,
                                           fingerprint(lead_id, body.model_dump_json().encode()), "follow_up")
            if replay is not None and replay.outcome == "key_reused":
                raise _reused(idem)
            if replay is not None:
                metrics.DUPLICATES.labels("follow_up").inc()
                return FollowUpAccepted(lead_id=lead_id, follow_up_id=None, status="duplicate")
        try:
            check_can_follow_up(lead.final_outcome)
        except FollowUpConflict as exc:
            metrics.REJECTED.labels("lead_closed").inc()
            raise ApiError(409, "lead_closed", str(exc), final_outcome=lead.final_outcome) from None
        occurred = body.occurred_at or now
        details = body.model_dump(mode="json", include={"reason", "bant", "amount", "note"}, exclude_none=True)
        await session.execute(follow_ups.insert().values(
            id=follow_up_id, lead_id=lead_id, touch_type=body.touch_type.value,
            outcome=body.outcome.value if body.outcome else None, actor=body.actor, occurred_at=occurred,
            logged_at=now, details=details))
        await session.execute(update(leads).where(leads.c.id == lead_id).values(
            status=status_after(lead.status, body.outcome),
            final_outcome=body.outcome.value if is_final(body.outcome) else None))
        event = Envelope.of(FollowUpLogged(
            lead_id=lead_id, follow_up_id=follow_up_id, touch_type=body.touch_type, actor=body.actor,
            occurred_at=occurred, logged_at=now, outcome=body.outcome, reason=body.reason, bant=body.bant,
            amount=body.amount, note=body.note), source=SOURCE, lead_id=lead_id, time=now)
        await tx.emit(event)
    metrics.FOLLOW_UPS.labels(body.touch_type.value, body.outcome.value if body.outcome else "none").inc()
    log.info("follow-up logged", extra={"lead_id": lead_id, "event_id": event.id, "follow_up_id": follow_up_id})
    return FollowUpAccepted(lead_id=lead_id, follow_up_id=follow_up_id, status="accepted")

