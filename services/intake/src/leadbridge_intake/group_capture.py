"""Capturing a GROUP of leads in one transaction, on plain asyncpg, with multi-row statements.

The same rules as ``capture.capture_lead`` (its behaviour is the reference; this is its batch form):

- a dedupe key (Idempotency-Key) is claimed with ``INSERT ... ON CONFLICT DO NOTHING``; a member whose key
  is claimed already answers with the first claim's lead ("duplicate");
- each person (normalized email / phone) is serialized by transaction-scoped advisory locks (class
  ``INTAKE_PERSON`` of ``leadbridge_events.locks``), taken for the whole group in one statement in the one
  sorted order every capture path uses (no deadlocks);
- a person seen within the repeat window (and not closed) gets an activity, not a new lead;
- every new lead or activity gets its event in the outbox, in the same transaction (and the relay's wake-up).

The caller (``group_commit``) never puts two members of the same person or the same dedupe key in one
group, so members are independent of each other. One round trip per step, whatever the group's size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from leadbridge_contracts.envelope import Envelope, new_event_id
from leadbridge_contracts.events import LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.first_of_lead import first_event
from leadbridge_events.locks import LockClass, object_key
from leadbridge_events.outbox import stage_events
from leadbridge_events.tracing import current_context, staged_as
from leadbridge_events.transaction import refuse_undeclared
from sqlalchemy.ext.asyncio import AsyncEngine

from .capture import SOURCE, CaptureResult, person_lock_names
from .handlers import HANDLERS
from .tables import SCHEMA, outbox

S = SCHEMA

CLAIM = f"""INSERT INTO {S}.submissions (scope, key, lead_id, kind, fingerprint)
SELECT s, k, l, 'captured', f FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, k, l, f)
ON CONFLICT DO NOTHING RETURNING scope, key"""
CLAIMED = f"""SELECT c.scope, c.key, c.lead_id, c.fingerprint FROM {S}.submissions c
JOIN unnest($1::text[], $2::text[]) AS t(s, k) ON c.scope = t.s AND c.key = t.k"""
# The group's transaction is planned per execution: asyncpg prepares each statement once per connection, and
# after five executions PostgreSQL may keep a generic plan made while the tables were small (at a new
# service's start the repeat look-up became a sequential scan of ``leads`` per member, growing with the
# table until autovacuum analyzed it: at 15,000 leads, 32 members took 70 ms instead of 1).
BEGIN = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan"
# A person is looked up as a repeat, and else stored as a new lead, in ONE statement: the look-up's snapshot is
# this statement's, taken after the statement that took the person locks (the locks must come first).
CAPTURE = f"""WITH m AS MATERIALIZED (SELECT m.i, (SELECT l.id FROM {S}.leads l
    WHERE (l.email = m.email OR l.phone = m.phone) AND l.last_activity_at >= m.since
      AND l.is_test IS FALSE AND l.final_outcome IS NULL
    ORDER BY l.created_at LIMIT 1) AS repeat_of
  FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[]) AS m(i, email, phone, since)),
new AS (INSERT INTO {S}.leads (id, created_at, last_activity_at, email, phone, source, channel, is_test,
    status, activity_count, profile, dedupe_key, status_detail)
  SELECT id, at, at, email, phone, source, channel, is_test, CASE WHEN is_test THEN 'test' ELSE 'captured' END, 0,
    profile::jsonb, dedupe_key, '{{}}'::jsonb
  FROM unnest($5::int[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
              $12::bool[], $13::text[], $14::text[]) AS t(i, id, at, email, phone, source, channel, is_test, profile,
                                                          dedupe_key)
  WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.i = t.i AND m.repeat_of IS NOT NULL))
SELECT i, repeat_of FROM m WHERE repeat_of IS NOT NULL"""


def locking(keys: list[int]) -> str:
    """The statement taking the person locks ``keys`` in this order (ints only: safe to inline, so that it can
    share a simple query, and its round trip, with the BEGIN)."""
    listed = ",".join(str(int(k)) for k in keys)
    return (f"SELECT pg_advisory_xact_lock({int(LockClass.INTAKE_PERSON)}, k) "
            f"FROM unnest('{{{listed}}}'::int[]) AS k")


RECLAIM = f"""UPDATE {S}.submissions c SET lead_id = t.l, kind = 'activity'
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, k, l) WHERE c.scope = t.s AND c.key = t.k"""
ACTIVITIES = f"""INSERT INTO {S}.activities (id, lead_id, occurred_at, kind, form_type, channel, source)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])"""
TOUCH = f"""UPDATE {S}.leads l SET last_activity_at = t.at, activity_count = l.activity_count + t.n
FROM unnest($1::text[], $2::timestamptz[], $3::int[]) AS t(id, at, n) WHERE l.id = t.id"""


@dataclass
class Member:
    """One capture request waiting for its group."""

    profile: LeadProfile
    now: datetime
    repeat_window: timedelta
    dedupe_scope: str | None = None
    dedupe_key: str | None = None
    fingerprint: str | None = None  # of the request body an Idempotency-Key came with
    activity_kind: str = "form_submission"
    trace: dict[str, str] = field(default_factory=current_context)  # the request's span, for its event's row

    @property
    def claim(self) -> tuple[str, str] | None:
        return (self.dedupe_scope, self.dedupe_key) if self.dedupe_scope and self.dedupe_key else None

    @cached_property  # asked for by the gathering loop and the group (the profile is frozen)
    def lock_keys(self) -> list[str]:
        if self.profile.is_test:
            return []
        return person_lock_names(self.profile.contact.email, self.profile.contact.phone)


def _json(profile: LeadProfile) -> str:
    """The profile column's JSON: ``json.dumps(profile.model_dump(mode="json"))`` by pydantic's own encoder
    (9 -> 1.7 us; the jsonb stored is the same value: test_group_commit)."""
    return profile.__pydantic_serializer__.to_json(profile).decode()


def _cols(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=False)] if rows else [[] for _ in range(width)]


async def capture_group(conn: Any, members: list[Member], engine: AsyncEngine | None = None) -> list[CaptureResult]:
    """Each member's CaptureResult, in order, in ONE transaction on asyncpg connection ``conn``: begun here
    (``BEGIN``), committed or rolled back by the caller. Four round trips without Idempotency-Keys: the BEGIN
    with the person locks, the look-up with the new leads, the activities (repeats only), the outbox."""
    results: list[CaptureResult | None] = [None] * len(members)
    new_ids = [new_event_id() for _ in members]  # random (version 4) UUIDs, as text
    claims = sorted((m.claim + (new_ids[i], m.fingerprint or ""), i)  # fixed order
                    for i, m in enumerate(members) if m.claim)
    if claims:  # claimed before the locks, as on every path (a duplicate waits on the first's claim)
        await conn.execute(BEGIN)
        rows = [c[:3] + (c[3] or None,) for c, _ in claims]
        won = {(r["scope"], r["key"]) for r in await conn.fetch(CLAIM, *_cols(rows, 4))}
        lost = [(c, i) for c, i in claims if (c[0], c[1]) not in won]
        if lost:
            firsts = {(r["scope"], r["key"]): (r["lead_id"], r["fingerprint"])
                      for r in await conn.fetch(CLAIMED, *_cols([c[:2] for c, _ in lost], 2))}
            for c, i in lost:
                first_lead, first_fingerprint = firsts[(c[0], c[1])]
                reused = c[3] and first_fingerprint and c[3] != first_fingerprint  # same key, another body
                results[i] = CaptureResult(first_lead, "key_reused" if reused else "duplicate")
    live = [i for i in range(len(members)) if results[i] is None]
    lock_names = sorted({k for i in live for k in members[i].lock_keys})  # the one order of every path
    lock = locking([object_key(n) for n in lock_names]) if lock_names else None
    if not claims:
        await conn.execute(f"{BEGIN}; {lock}" if lock else BEGIN)
    elif lock:
        await conn.execute(lock)
    repeat_of: dict[int, str] = {}
    if live:
        looked = [(i, members[i].profile.contact.email, members[i].profile.contact.phone,
                   members[i].now - members[i].repeat_window) for i in live if members[i].lock_keys]
        candidates = [(i, new_ids[i], m.now, p.contact.email, p.contact.phone, p.source, p.channel, p.is_test,
                       _json(p), m.dedupe_key)
                      for i in live for m in (members[i],) for p in (m.profile,)]
        repeat_of = {r[0]: r[1] for r in await conn.fetch(CAPTURE, *_cols(looked, 4), *_cols(candidates, 10))}
    reclaims: list[tuple[Any, ...]] = []
    activities: list[tuple[Any, ...]] = []
    touched: Counter[str] = Counter()
    touched_at: dict[str, datetime] = {}
    events: list[Envelope[Any]] = []
    traces: dict[str, dict[str, str]] = {}
    for i in live:
        m, p = members[i], members[i].profile
        if i in repeat_of:
            lead_id, activity_id = repeat_of[i], new_event_id()
            if m.claim:
                reclaims.append((*m.claim, lead_id))
            activities.append((activity_id, lead_id, m.now, m.activity_kind, p.form_type, p.channel, p.source))
            touched[lead_id] += 1
            touched_at[lead_id] = max(touched_at.get(lead_id, m.now), m.now)
            event = Envelope.of(LeadActivityRecorded(
                lead_id=lead_id, activity_id=activity_id, occurred_at=m.now, kind=m.activity_kind,
                form_type=p.form_type, channel=p.channel, campaign=p.campaign, profile=p),
                source=SOURCE, lead_id=lead_id, time=m.now)
            results[i] = CaptureResult(lead_id, "activity", event_id=event.id, activity_id=activity_id)
        else:
            lead_id = new_ids[i]
            event = first_event(  # a lead minted here: its first event, marked so (express lane)
                LeadCaptured(lead_id=lead_id, captured_at=m.now, profile=p, dedupe_key=m.dedupe_key),
                source=SOURCE, lead_id=lead_id, time=m.now)
            results[i] = CaptureResult(lead_id, "captured", event_id=event.id)
        events.append(event)
        traces[event.id] = m.trace
    if reclaims:
        await conn.execute(RECLAIM, *_cols(reclaims, 3))
    if activities:
        await conn.execute(ACTIVITIES, *_cols(activities, 7))
        await conn.execute(TOUCH, list(touched), [touched_at[k] for k in touched], list(touched.values()))
    for event in events:  # what ctx.emit / tx.emit check on the other paths
        refuse_undeclared(event, HANDLERS.emitted_types, SOURCE)
    with staged_as(traces):  # each row with its own request's traceparent
        # the one outbox insert of every path, on this plain connection (``engine``: see outbox.wake_after_commit)
        await stage_events(conn, outbox, events, local=engine)
    return [r for r in results if r is not None]
