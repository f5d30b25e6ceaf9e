"""Quarantine instead of drop: a platform lead we answered 200 for but cannot turn into a lead.

Meta and LinkedIn deliver a lead id (we fetch the data later); Google delivers the data, and resends nothing
after a 4xx. A payload that fails mapping or ``LeadSubmission`` validation (a mistyped phone, a free-text
country, a long answer) is kept here with its raw payload and a reason code, counted
(``intake_quarantined_total{platform, reason}``) and alerted; an operator lists it through the admin API and
re-processes it after a fix, a field-mapping change, or with corrected values: mapping and validation run
again on the stored payload and it is captured as a normal lead with its platform id as dedupe key, so a
re-process (or a platform redelivery) never makes a second lead.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from leadbridge_events.transaction import Transaction
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics
from .api.errors import field_errors
from .capture import CaptureResult, capture_lead
from .mapping import map_platform_lead
from .reporting import record_result
from .submission import LeadSubmission, from_flat_fields
from .tables import pending_fetches, quarantined_leads

log = logging.getLogger("leadbridge.intake.quarantine")

# the reason codes: a small fixed set (a metric label), never a value from the payload
REASONS = ("invalid_email", "invalid_phone", "invalid_country", "invalid_language", "invalid_company_size",
           "too_long", "missing_contact", "invalid_field", "unmappable")
_FIELD_REASONS = {"email": "invalid_email", "phone": "invalid_phone", "country": "invalid_country",
                  "language": "invalid_language", "company_size": "invalid_company_size"}
QUARANTINED, RELEASED = "quarantined", "released"
SECRET_KEYS = frozenset({"google_key"})


class Unusable(Exception):
    """The payload cannot become a lead: ``reason`` (one of REASONS) and field-level ``errors``."""

    def __init__(self, reason: str, errors: list[dict[str, str]]) -> None:
        super().__init__(reason)
        self.reason, self.errors = reason, errors


def reason_code(exc: ValidationError) -> str:
    """The reason code of the first error (the metric label and the list filter)."""
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        kind, message = str(err.get("type", "")), str(err.get("msg", ""))
        if kind == "string_too_long" or "at most" in message:
            return "too_long"
        if not loc and "email or phone" in message:
            return "missing_contact"
        if loc and loc[0] in _FIELD_REASONS:
            return _FIELD_REASONS[loc[0]]
    return "invalid_field"


def without_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in SECRET_KEYS}


def validated(platform: str, raw: dict[str, Any], *, region: str,
              corrections: dict[str, str] | None = None) -> tuple[LeadSubmission, bool]:
    """Map and validate a platform payload (with an operator's ``corrections`` on top); raises ``Unusable``."""
    try:
        fields, is_test = map_platform_lead(platform, raw)
    except Exception as exc:  # noqa: BLE001 - a payload shape the mapping cannot read
        raise Unusable("unmappable", [{"field": "(payload)", "message": f"mapping failed: {type(exc).__name__}",
                                       "type": "unmappable"}]) from None
    fields.update(corrections or {})
    try:
        submission = LeadSubmission.model_validate(from_flat_fields(fields), context={"region": region})
    except ValidationError as exc:
        raise Unusable(reason_code(exc), field_errors(list(exc.errors()), drop_prefix=())) from None
    return submission, is_test


async def quarantine(session: AsyncSession, platform: str, platform_lead_id: str, raw: dict[str, Any],
                     problem: Unusable) -> tuple[str, Any]:
    """Keep the payload (in the caller's transaction); a redelivery finds the first row. Returns (id, row)."""
    new_id = str(uuid.uuid4())
    stmt = (insert(quarantined_leads)
            .values(id=new_id, platform=platform, platform_lead_id=platform_lead_id, raw=without_secrets(raw),
                    reason=problem.reason, errors=problem.errors, status=QUARANTINED, attempts=0)
            .on_conflict_do_nothing().returning(quarantined_leads.c.id))
    inserted = (await session.execute(stmt)).scalar()
    row = (await session.execute(select(quarantined_leads).where(
        quarantined_leads.c.platform == platform, quarantined_leads.c.platform_lead_id == platform_lead_id))).one()
    if inserted:
        metrics.QUARANTINED.labels(platform, problem.reason).inc()
        log.warning("platform lead quarantined", extra={"quarantine_id": row.id, "platform": platform,
                                                         "reason": problem.reason})
    return row.id, row


async def list_quarantined(session: AsyncSession, *, status: str | None, platform: str | None,
                           limit: int, quarantine_id: str | None = None) -> list[Any]:
    q = quarantined_leads
    stmt = select(q).order_by(q.c.received_at, q.c.id).limit(limit)
    if quarantine_id:
        stmt = stmt.where(q.c.id == quarantine_id)
    if status:
        stmt = stmt.where(q.c.status == status)
    if platform:
        stmt = stmt.where(q.c.platform == platform)
    return list((await session.execute(stmt)).all())


async def count_open(session: AsyncSession) -> dict[str, int]:
    q = quarantined_leads
    rows = await session.execute(select(q.c.platform, func.count()).where(q.c.status == QUARANTINED)
                                 .group_by(q.c.platform))
    return {platform: n for platform, n in rows.all()}


@dataclass(frozen=True)
class Reprocessed:
    quarantine_id: str
    status: str  # released | quarantined (still unusable)
    lead_id: str | None = None
    outcome: str | None = None  # captured | activity | duplicate | already_released
    problem: Unusable | None = None


async def reprocess(tx: Transaction, quarantine_id: str, *, now: datetime, region: str,
                    repeat_window: timedelta, corrections: dict[str, str] | None = None) -> Reprocessed | None:
    """Map and validate the stored payload again and capture it (in the caller's transaction); None: no such id.

    Idempotent: a released row answers its lead; the capture's dedupe key is the platform id, so even a
    platform redelivery captured meanwhile yields the same lead."""
    q, session = quarantined_leads, tx.session
    row = (await session.execute(select(q).where(q.c.id == quarantine_id).with_for_update())).first()
    if row is None:
        return None
    if row.status == RELEASED:
        return Reprocessed(row.id, RELEASED, row.lead_id, "already_released")
    where = q.c.id == row.id
    try:
        submission, is_test = validated(row.platform, row.raw, region=region, corrections=corrections)
    except Unusable as problem:
        await session.execute(update(q).where(where).values(
            reason=problem.reason, errors=problem.errors, attempts=q.c.attempts + 1, corrections=corrections,
            updated_at=now))
        return Reprocessed(row.id, QUARANTINED, problem=problem)
    result: CaptureResult = await capture_lead(
        tx, submission.profile(source=row.platform, is_test=is_test), now=now, repeat_window=repeat_window,
        dedupe_scope=row.platform, dedupe_key=row.platform_lead_id, activity_kind="form_submission")
    await session.execute(update(q).where(where).values(
        status=RELEASED, lead_id=result.lead_id, attempts=q.c.attempts + 1, corrections=corrections,
        updated_at=now))
    await session.execute(update(pending_fetches).where(
        pending_fetches.c.platform == row.platform, pending_fetches.c.platform_lead_id == row.platform_lead_id)
        .values(lead_id=result.lead_id))
    metrics.QUARANTINE_RELEASED.labels(row.platform).inc()
    record_result(result, source=row.platform, channel=submission.channel, dedupe_kind=f"{row.platform}_id")
    log.info("quarantined platform lead released", extra={"quarantine_id": row.id, "lead_id": result.lead_id,
                                                          "platform": row.platform})
    return Reprocessed(row.id, RELEASED, result.lead_id, result.outcome)
