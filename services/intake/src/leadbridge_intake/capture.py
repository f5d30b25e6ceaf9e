"""Storing a captured lead (or a repeat person's activity) and its event in ONE transaction.

Exactly once: a dedupe key (Idempotency-Key or a platform lead id) is claimed with
``INSERT ... ON CONFLICT DO NOTHING`` on a unique key; a concurrent duplicate blocks on that key until
the first transaction commits, then finds the first's lead. The same person (normalized email or
phone) is serialized by transaction-scoped advisory locks, so a double click becomes one lead.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.express import first_of_lead
from leadbridge_events.locks import LockClass, xact_lock_params
from leadbridge_events.transaction import Transaction, Transactions
from sqlalchemy import TextClause, and_, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import activities, leads, submissions

SOURCE = "intake"


@dataclass(frozen=True)
class CaptureResult:
    lead_id: str
    outcome: str  # "captured" | "activity" | "duplicate" | "key_reused" (same key, another body: nothing stored)
    event_id: str | None = None
    activity_id: str | None = None


async def _claim(session: AsyncSession, scope: str, key: str, lead_id: str, fingerprint: str | None = None,
                 kind: str = "captured") -> str | None:
    """Claim a dedupe key for ``lead_id``; None if claimed already, else the lead id."""
    stmt = (insert(submissions).values(scope=scope, key=key, lead_id=lead_id, kind=kind, fingerprint=fingerprint)
            .on_conflict_do_nothing().returning(submissions.c.lead_id))
    return (await session.execute(stmt)).scalar()


async def _existing_claim(session: AsyncSession, scope: str, key: str) -> tuple[str, str | None]:
    row = (await session.execute(select(submissions.c.lead_id, submissions.c.fingerprint)
                                 .where(submissions.c.scope == scope, submissions.c.key == key))).one()
    return row.lead_id, row.fingerprint


async def claim_or_replay(session: AsyncSession, scope: str, key: str, lead_id: str, fingerprint: str | None,
                          kind: str) -> CaptureResult | None:
    """Claim ``key``; if it was claimed before: "duplicate" (same body) or "key_reused" (another body)."""
    if await _claim(session, scope, key, lead_id, fingerprint, kind) is not None:
        return None
    first_lead, first_fingerprint = await _existing_claim(session, scope, key)
    if fingerprint and first_fingerprint and fingerprint != first_fingerprint:
        return CaptureResult(first_lead, "key_reused")
    return CaptureResult(first_lead, "duplicate")


def person_lock_names(email: str | None, phone: str | None) -> list[str]:
    """The names of the advisory locks (class ``INTAKE_PERSON``) that serialize captures of one person,
    sorted: every capture path, one by one or in a group, takes them in this one order."""
    return sorted({*([f"e:{email}"] if email else []), *([f"p:{phone}"] if phone else [])})


@functools.cache
def _lock_statement(count: int) -> TextClause:
    # the select list is evaluated left to right: the setting first, then the locks in the order given
    return text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                + ", ".join(f"pg_advisory_xact_lock(:c, :k{i})" for i in range(count)))


async def _lock_identities(session: AsyncSession, identities: list[str]) -> None:
    """One statement, the locks in a fixed (sorted) order: no deadlocks. Their own lock class (``locks.py``).

    The same statement makes the rest of the transaction plan per execution: the repeat look-up is a cached
    prepared statement, and a generic plan made while ``leads`` was small scans the table (group_capture.BEGIN).
    """
    if identities:
        params = xact_lock_params(LockClass.INTAKE_PERSON, identities)[1]
        await session.execute(_lock_statement(len(params) - 1), params)


async def _write_with_event(tx: Transaction, writes: list[Any], event: Envelope[Any]) -> None:
    """``writes`` (INSERT/UPDATE statements) in ONE statement, and the event emitted with them (the outbox
    row is written with the transaction's other emits, just before it commits)."""
    stmt = select(literal(1))
    for i, write in enumerate(writes):
        stmt = stmt.add_cte(write.cte(f"w{i}"))
    await tx.session.execute(stmt)
    await tx.emit(event)


async def _find_repeat(session: AsyncSession, email: str | None, phone: str | None, since: datetime) -> str | None:
    same = []
    if email:
        same.append(leads.c.email == email)
    if phone:
        same.append(leads.c.phone == phone)
    stmt = (select(leads.c.id).where(and_(or_(*same), leads.c.last_activity_at >= since,
                                          leads.c.is_test.is_(False), leads.c.final_outcome.is_(None)))
            .order_by(leads.c.created_at).limit(1))
    return (await session.execute(stmt)).scalar()


async def capture_lead(
    tx: Transaction,
    profile: LeadProfile,
    *,
    now: datetime,
    repeat_window: timedelta,
    dedupe_scope: str | None = None,
    dedupe_key: str | None = None,
    fingerprint: str | None = None,
    activity_kind: str = "form_submission",
) -> CaptureResult:
    """Inside the caller's transaction: a new lead + LeadCaptured, or an activity + LeadActivityRecorded."""
    session = tx.session
    new_id = str(uuid.uuid4())
    if dedupe_scope and dedupe_key:
        replay = await claim_or_replay(session, dedupe_scope, dedupe_key, new_id, fingerprint, "captured")
        if replay is not None:
            return replay
    email, phone = profile.contact.email, profile.contact.phone
    repeat_of = None
    if not profile.is_test:
        await _lock_identities(session, person_lock_names(email, phone))
        repeat_of = await _find_repeat(session, email, phone, now - repeat_window)
    if repeat_of is not None:
        return await _record_activity(tx, repeat_of, profile, now=now, kind=activity_kind,
                                      dedupe_scope=dedupe_scope, dedupe_key=dedupe_key)
    row = leads.insert().values(
        id=new_id, created_at=now, last_activity_at=now, email=email, phone=phone, source=profile.source,
        channel=profile.channel, is_test=profile.is_test, status="test" if profile.is_test else "captured",
        activity_count=0, profile=profile.model_dump(mode="json"), dedupe_key=dedupe_key, status_detail={},
    )
    event = first_of_lead(Envelope.of(  # a lead minted here: no earlier event of it exists (express lane)
        LeadCaptured(lead_id=new_id, captured_at=now, profile=profile, dedupe_key=dedupe_key),
        source=SOURCE, lead_id=new_id, time=now))
    await _write_with_event(tx, [row], event)
    return CaptureResult(new_id, "captured", event_id=event.id)


async def capture_in_transaction(transaction: Transactions, profile: LeadProfile, **options: Any) -> CaptureResult:
    """``capture_lead`` in a transaction of its own, committed when this returns.

    The engine does not ping a connection at each checkout (a round trip per request); a pooled connection
    found dead (the database restarted) fails its first statement instead, and the pool is invalidated. That
    attempt is retried once on a new connection when the failure came before the commit: nothing of it was
    stored. A failure during the commit itself is never retried (it may have committed), the client gets 5xx.
    """
    for attempt in (1, 2):
        committing = False
        try:
            async with transaction() as tx:
                result = await capture_lead(tx, profile, **options)
                committing = True  # from here on the outbox insert and the commit: never retried
            return result
        except DBAPIError as exc:
            if attempt == 2 or committing or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


async def _record_activity(tx: Transaction, lead_id: str, profile: LeadProfile, *, now: datetime, kind: str,
                           dedupe_scope: str | None, dedupe_key: str | None) -> CaptureResult:
    activity_id = str(uuid.uuid4())
    writes: list[Any] = []
    if dedupe_scope and dedupe_key:
        writes.append(update(submissions).where(submissions.c.scope == dedupe_scope, submissions.c.key == dedupe_key)
                      .values(lead_id=lead_id, kind="activity"))
    writes.append(activities.insert().values(
        id=activity_id, lead_id=lead_id, occurred_at=now, kind=kind, form_type=profile.form_type,
        channel=profile.channel, source=profile.source))
    writes.append(update(leads).where(leads.c.id == lead_id)
                  .values(last_activity_at=now, activity_count=leads.c.activity_count + 1))
    event = Envelope.of(
        LeadActivityRecorded(lead_id=lead_id, activity_id=activity_id, occurred_at=now, kind=kind,
                             form_type=profile.form_type, channel=profile.channel, campaign=profile.campaign,
                             profile=profile),
        source=SOURCE, lead_id=lead_id, time=now)
    await _write_with_event(tx, writes, event)
    return CaptureResult(lead_id, "activity", event_id=event.id, activity_id=activity_id)


async def get_lead(session: AsyncSession, lead_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(leads).where(leads.c.id == lead_id))).mappings().first()
    return dict(row) if row else None
