"""The durable delivery queue in PostgreSQL: enqueue in the consumer's transaction, claim per-lead heads, record.

Order: for one (destination, lead) only the oldest pending delivery is ever due ("the head"): a lead's
re-route reaches a CRM after its first routing, never before. One sender works on a destination at a time
(its ``destinations`` row is locked FOR UPDATE SKIP LOCKED for the batch), so replicas share destinations
and never send the same delivery concurrently.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from sqlalchemy import and_, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import crm_owners, crm_records, deliveries, destinations

_NS = uuid.UUID("0f6a7c1e-5d2b-4a8e-b3c9-7e1d2f4a6b80")
PENDING = "pending"


def delivery_id(destination: str, event_id: str) -> str:
    """Stable per (destination, event): the ``webhook-id`` receivers dedupe on, the same on every retry."""
    return "msg_" + uuid.uuid5(_NS, f"{destination}|{event_id}").hex


def kind_of(destination: str) -> str:
    return destination.split(":", 1)[0]


@dataclass(frozen=True)
class Delivery:
    id: int
    delivery_id: str
    destination: str
    lead_id: str
    event_id: str
    event_type: str
    event_time: datetime
    payload: dict[str, Any]
    attempts: int

    @property
    def data(self) -> dict[str, Any]:
        return self.payload["data"]


def payload_of(event: Envelope[Any]) -> dict[str, Any]:
    return {"event": {"id": event.id, "type": event.type, "source": event.source, "time": event.time.isoformat(),
                      "lead_id": event.lead_id, "correlation_id": event.correlation_id,
                      "causation_id": event.causation_id},
            "data": event.data.model_dump(mode="json")}


async def enqueue(session: AsyncSession, event: Envelope[Any], targets: list[str]) -> int:
    """Queue ``event`` for each destination (idempotent per destination and event)."""
    if not targets:
        return 0
    await session.execute(insert(destinations).values([{"id": t, "kind": kind_of(t)} for t in targets])
                          .on_conflict_do_nothing(index_elements=[destinations.c.id]))
    payload = payload_of(event)
    result = await session.execute(insert(deliveries).values([
        {"delivery_id": delivery_id(t, event.id), "destination": t, "lead_id": event.lead_id, "event_id": event.id,
         "event_type": event.type, "event_time": event.time, "payload": payload} for t in targets
    ]).on_conflict_do_nothing(index_elements=[deliveries.c.delivery_id]))
    return result.rowcount or 0


def payload_json(event: Envelope[Any]) -> str:
    """``payload_of(event)`` as JSON text, its data serialized by pydantic (the same JSON, less CPU)."""
    head = json.dumps({"id": event.id, "type": event.type, "source": event.source, "time": event.time.isoformat(),
                       "lead_id": event.lead_id, "correlation_id": event.correlation_id,
                       "causation_id": event.causation_id})
    return f'{{"event": {head}, "data": {event.data.model_dump_json()}}}'


_ENQUEUE_MANY = text(f"""
WITH targets AS (
    INSERT INTO {destinations.fullname} (id, kind)
    SELECT * FROM unnest(CAST(:dest_id AS text[]), CAST(:dest_kind AS text[]))
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO {deliveries.fullname} (delivery_id, destination, lead_id, event_id, event_type, event_time, payload)
SELECT d.delivery_id, d.destination, d.lead_id, d.event_id, d.event_type, d.event_time, CAST(d.payload AS jsonb)
FROM unnest(CAST(:delivery_id AS text[]), CAST(:destination AS text[]), CAST(:lead_id AS text[]),
            CAST(:event_id AS text[]), CAST(:event_type AS text[]), CAST(:event_time AS timestamptz[]),
            CAST(:payload AS text[]))
    WITH ORDINALITY AS d(delivery_id, destination, lead_id, event_id, event_type, event_time, payload, ord)
ORDER BY d.ord
ON CONFLICT (delivery_id) DO NOTHING
""")


async def enqueue_many(session: AsyncSession, queued: list[tuple[Envelope[Any], list[str]]]) -> None:
    """``enqueue`` for many events, in their order, in one statement (a constant one: prepared once)."""
    rows = [(event, t) for event, targets in queued for t in targets]
    if not rows:
        return
    payloads = {event.id: payload_json(event) for event, targets in queued if targets}
    kinds = {t: kind_of(t) for _, t in rows}
    await session.execute(_ENQUEUE_MANY, {
        "dest_id": list(kinds), "dest_kind": list(kinds.values()),
        "delivery_id": [delivery_id(t, e.id) for e, t in rows], "destination": [t for _, t in rows],
        "lead_id": [e.lead_id for e, _ in rows], "event_id": [e.id for e, _ in rows],
        "event_type": [e.type for e, _ in rows], "event_time": [e.time for e, _ in rows],
        "payload": [payloads[e.id] for e, _ in rows]})


async def due_destinations(session: AsyncSession, now: datetime, limit: int = 50) -> list[str]:
    d, x = deliveries, destinations
    rows = await session.execute(
        select(d.c.destination).join(x, x.c.id == d.c.destination)
        .where(d.c.status == PENDING, d.c.next_attempt_at <= now, x.c.paused_at.is_(None),
               (x.c.blocked_until.is_(None)) | (x.c.blocked_until <= now))
        .group_by(d.c.destination).order_by(func.min(d.c.next_attempt_at)).limit(limit))
    return [r.destination for r in rows]


async def lock_destination(session: AsyncSession, destination: str, now: datetime) -> Any | None:
    """The destination's row, locked for this transaction; None if another sender has it or it must wait."""
    x = destinations
    return (await session.execute(
        select(x).where(x.c.id == destination, x.c.paused_at.is_(None),
                        (x.c.blocked_until.is_(None)) | (x.c.blocked_until <= now))
        .with_for_update(skip_locked=True))).first()


async def claim_heads(session: AsyncSession, destination: str, now: datetime, limit: int) -> list[Delivery]:
    """The due head-of-line deliveries of a destination (oldest first), at most one per lead."""
    d = deliveries
    earlier = d.alias("earlier")
    rows = await session.execute(
        select(d).where(
            d.c.destination == destination, d.c.status == PENDING, d.c.next_attempt_at <= now,
            ~exists().where(and_(earlier.c.destination == d.c.destination, earlier.c.lead_id == d.c.lead_id,
                                 earlier.c.status == PENDING, earlier.c.id < d.c.id)))
        .order_by(d.c.id).limit(limit).with_for_update(skip_locked=True))
    return [Delivery(r.id, r.delivery_id, r.destination, r.lead_id, r.event_id, r.event_type, r.event_time,
                     r.payload, r.attempts) for r in rows]


async def remember_owner(session: AsyncSession, owner_ids: dict[str, str], rep_id: str | None) -> None:
    """CRM user -> rep, so activity logged in the CRM is attributed to the rep (``follow-up-logged.actor``)."""
    if not rep_id or not owner_ids:
        return
    rows = [{"crm": crm, "owner_id": owner, "rep_id": rep_id} for crm, owner in owner_ids.items() if owner]
    if rows:
        stmt = insert(crm_owners).values(rows)
        await session.execute(stmt.on_conflict_do_update(
            index_elements=[crm_owners.c.crm, crm_owners.c.owner_id],
            set_={"rep_id": stmt.excluded.rep_id, "updated_at": func.now()}))


async def remember_owners(session: AsyncSession, owners: dict[tuple[str, str], str]) -> None:
    """``remember_owner`` for many (crm, owner id) -> rep (each key once: the batch's last word) in one statement."""
    if not owners:
        return
    stmt = insert(crm_owners).values([{"crm": crm, "owner_id": owner, "rep_id": rep}
                                      for (crm, owner), rep in owners.items()])
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[crm_owners.c.crm, crm_owners.c.owner_id],
        set_={"rep_id": stmt.excluded.rep_id, "updated_at": func.now()}))


async def rep_for_owner(session: AsyncSession, crm: str, owner_id: str | None) -> str | None:
    if not owner_id:
        return None
    return (await session.execute(select(crm_owners.c.rep_id).where(
        crm_owners.c.crm == crm, crm_owners.c.owner_id == owner_id))).scalar()


async def remember_record(session: AsyncSession, destination: str, lead_id: str, record_id: str,
                          owner_id: str | None) -> None:
    values = {"record_id": record_id, "owner_id": owner_id}
    stmt = insert(crm_records).values(destination=destination, lead_id=lead_id, **values)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[crm_records.c.destination, crm_records.c.lead_id], set_={**values, "updated_at": func.now()}))


async def lead_for_record(session: AsyncSession, destination: str, record_id: str) -> tuple[str, str | None] | None:
    """(lead id, owner id) of a CRM record this service created, or None (a record LeadBridge did not send)."""
    row = (await session.execute(select(crm_records.c.lead_id, crm_records.c.owner_id).where(
        crm_records.c.destination == destination, crm_records.c.record_id == record_id)
        .order_by(crm_records.c.updated_at.desc()).limit(1))).first()
    return (row.lead_id, row.owner_id) if row else None


async def replay_dead(session: AsyncSession, destination: str, now: datetime, lead_id: str | None = None) -> int:
    """Put an endpoint's dead letters back in the queue (a fresh retry schedule each)."""
    where = [deliveries.c.destination == destination, deliveries.c.status == "dead"]
    if lead_id:
        where.append(deliveries.c.lead_id == lead_id)
    result = await session.execute(update(deliveries).where(*where).values(
        status=PENDING, attempts=0, next_attempt_at=now, finished_at=None))
    return result.rowcount or 0


async def resume(session: AsyncSession, destination: str) -> bool:
    result = await session.execute(update(destinations).where(destinations.c.id == destination).values(
        paused_at=None, failing_since=None, blocked_until=None))
    return bool(result.rowcount)


async def cancel_pending(session: AsyncSession, destination: str, now: datetime, why: str) -> int:
    result = await session.execute(update(deliveries).where(
        deliveries.c.destination == destination, deliveries.c.status == PENDING).values(
        status="cancelled", last_error=why, finished_at=now))
    return result.rowcount or 0
