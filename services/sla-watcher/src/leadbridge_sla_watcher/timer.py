"""The timer loop: claims due deadlines from PostgreSQL and fires them through the outbox, in batches.

One iteration, in one transaction, three statements whatever the batch size:

1. the claim, which is also the mark (``claim_sql``)::

       WITH due AS MATERIALIZED (SELECT * FROM deadlines WHERE status = 'open' AND next_fire_at <= :now
                                 ORDER BY next_fire_at LIMIT :batch FOR UPDATE SKIP LOCKED)
       UPDATE deadlines SET <what deadlines.fire does> FROM due
       WHERE deadlines.id = ANY(ARRAY(SELECT id FROM due)) AND deadlines.id = due.id RETURNING due.<columns>

   (the ``ANY(ARRAY(...))`` makes the update find its rows by primary key whatever the batch size: joined
   on ``id`` alone, PostgreSQL hashed the whole table for batches of ~1,000 rows and more, a sequential
   scan of every open deadline per batch);

   the SQL is ``fire``'s state change written as ``CASE`` expressions (a test runs both over every kind
   of due row and requires the same result). It returns the rows as they were before, so the pure
   ``deadlines.due_firing`` (what ``fire`` fires) decides at-risk or breach for each, and builds its event
   (which carries no field that ``fire`` changes);
2. every event into the outbox in one multi-row insert (``stage_events``, one NOTIFY for the relay);
3. the commit.

A row that cannot be read (a corrupted value, a bug) is parked with status ``unreadable`` in the same
transaction (its fire times put back as they were), logged and counted, and the others fire: one bad row
never stops the timer for everyone. A crash before the commit fires nothing (the rows are claimed again
after the restart); after it, the rows are no longer due: nothing fires twice. Replicas skip each other's
locked rows, so they share the work and never double-fire. Event ids are derived from the deadline id and
the firing, so even a replay would be deduplicated downstream. Each firing is logged at DEBUG (lead and
deadline ids), each batch at INFO (counts, worst lag): at 100,000 firings a second, a line per firing
would cost more than the firing. For the same reason the per-firing Python is kept lean: a row becomes a
``Deadline`` by position (``store.from_claimed``), the envelope classes are parametrized once, the event id
is ``uuid5`` computed without the ``UUID`` object (``event_id``, tested equal).

When a batch is not full, the same transaction reads the next fire time, and only the first worker polls;
the others sleep until a full batch says more is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import SlaAtRisk, SlaBreached
from leadbridge_events.clock import Clock, utcnow
from leadbridge_events.failures import describe
from leadbridge_events.transaction import Transactions
from sqlalchemy import Table, TextClause, literal_column, select, text

from . import metrics, store
from .deadlines import Deadline, Firing, Status, due_firing
from .tables import deadlines

log = logging.getLogger("leadbridge.sla_watcher.timer")
SOURCE = "sla-watcher"
_EVENT_NS = uuid.UUID("5b3c1f0e-8d7a-4b7e-9a51-2f4c6d8e0a11")


_ENVELOPES: dict[Firing, type[Envelope[Any]]] = {Firing.AT_RISK: Envelope[SlaAtRisk],  # parametrized once
                                                  Firing.BREACH: Envelope[SlaBreached]}
_NS = _EVENT_NS.bytes


def event_id(deadline_id: str, firing: Firing) -> str:
    """``str(uuid.uuid5(_EVENT_NS, f"{deadline_id}:{firing.value}"))``, without building a ``UUID`` (a third of the
    cost): SHA-1 of namespace + name, version 5, RFC 4122 variant."""
    h = bytearray(hashlib.sha1(_NS + f"{deadline_id}:{firing.value}".encode()).digest()[:16])
    h[6], h[8] = (h[6] & 0x0F) | 0x50, (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def firing_event(d: Deadline, firing: Firing, fired_at: datetime) -> Envelope[Any]:
    """The event of one firing: what ``Envelope.of(data, source=SOURCE, lead_id=..., event_id=..., time=fired_at)``
    builds (no cause: the correlation id is its own id), without looking up the parametrized class each time."""
    common = dict(lead_id=d.lead_id, deadline_id=d.id, policy=d.policy, kind=d.kind, assignee_id=d.assignee_id,
                  team=d.team, due_at=d.due_at, fired_at=fired_at, routing_attempt=d.attempt)
    data = SlaAtRisk(**common) if firing == Firing.AT_RISK else SlaBreached(**common, escalate=d.escalate)
    eid = event_id(d.id, firing)
    return _ENVELOPES[firing](id=eid, type=data.event_type, source=SOURCE, time=fired_at, lead_id=d.lead_id,
                              schema_version=data.schema_version, correlation_id=eid, causation_id=None, data=data)


def claim_sql(limit: int, table: Table = deadlines) -> TextClause:
    """Claim up to ``limit`` due rows and apply ``deadlines.fire`` to them at ``:now``; returns them as they were
    (the columns ``store.CLAIMED``, in that order: ``store.from_claimed`` reads them by position).

    ``fire``: due (``now`` >= the row's computed next fire time) and past ``due_at`` -> breached; due
    before ``due_at`` -> the at-risk warning, next fire at ``due_at``. A claimed row that ``fire`` finds
    not due (its stored ``next_fire_at`` early) fires nothing and gets its computed next fire time back.

    ``limit`` is a literal, not a parameter, so that even a generic plan of the prepared statement knows it
    (see ``_PLAN`` for the rest of what keeps the plan an ordered index walk).
    """
    now = "CAST(:now AS timestamptz)"
    at_risk_pending = "(due.at_risk_at IS NOT NULL AND due.at_risk_fired_at IS NULL AND due.at_risk_at < due.due_at)"
    breach = f"{now} >= due.due_at"
    at_risk = f"(NOT ({breach}) AND {at_risk_pending} AND {now} >= due.at_risk_at)"
    return text(f"""
WITH due AS MATERIALIZED (
    SELECT * FROM {table.fullname} WHERE status = '{Status.OPEN.value}' AND next_fire_at <= {now}
    ORDER BY next_fire_at LIMIT {int(limit)} FOR UPDATE SKIP LOCKED)
UPDATE {table.fullname} AS d SET
    status = CASE WHEN {breach} THEN '{Status.BREACHED.value}' ELSE due.status END,
    breach_fired_at = CASE WHEN {breach} THEN {now} ELSE due.breach_fired_at END,
    at_risk_fired_at = CASE WHEN {at_risk} THEN {now} ELSE due.at_risk_fired_at END,
    next_fire_at = CASE WHEN {breach} THEN NULL
                        WHEN {at_risk_pending} AND {now} < due.at_risk_at THEN due.at_risk_at
                        ELSE due.due_at END
FROM due WHERE d.id = ANY(ARRAY(SELECT id FROM due)) AND d.id = due.id
RETURNING {", ".join(f"due.{c}" for c in store.CLAIMED)}""")


def _park_sql(table: Table = deadlines) -> TextClause:
    """Park unreadable rows, their fire times as they were before the claim changed them."""
    return text(f"""
UPDATE {table.fullname} AS d SET status = '{Status.UNREADABLE.value}', next_fire_at = NULL,
       at_risk_fired_at = p.at_risk, breach_fired_at = p.breach
FROM unnest(CAST(:ids AS text[]), CAST(:at_risk AS timestamptz[]), CAST(:breach AS timestamptz[]))
     AS p(id, at_risk, breach)
WHERE d.id = p.id""")


_PARK = _park_sql()
# The claim's plan must not depend on the statistics: rows that came due since the last ANALYZE (a Monday's
# 100,000, created just before) are invisible to them, and estimating a handful PostgreSQL read every due row
# by bitmap and sorted them, per batch (O(due) per batch: 200 us of its CPU per firing instead of ~40). Without
# sort and bitmap the only plan left walks the due index in order and stops after ``limit`` rows.
_PLAN = text("SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)")  # SET LOCAL
# The earliest open fire time, as the first entry of the due index: 'open' inline, not a parameter (a generic plan
# cannot tell that a parameter matches the index's predicate, and read every deadline: 21 ms a look-up at 45,000
# rows, several look-ups a second), and as ORDER BY ... LIMIT 1, not min(): with statistics taken while few were
# open, min() was planned as an aggregate over the whole index (54,000 entries, 27 ms), not its first entry.
_NEXT = (select(deadlines.c.next_fire_at)
         .where(deadlines.c.status == literal_column(f"'{Status.OPEN.value}'"), deadlines.c.next_fire_at.is_not(None))
         .order_by(deadlines.c.next_fire_at).limit(1))
_NEXT_AT = len(store.CLAIMED) - 1  # the claimed row's stored next_fire_at


def _due_order(row: Any) -> tuple[datetime, str]:
    return row[_NEXT_AT], row[0]


class TimerLoop:
    def __init__(self, transaction: Transactions, *, batch_size: int = 500, poll_seconds: float = 0.2,
                 clock: Clock = utcnow, workers: int = 1) -> None:
        """``transaction``: the runtime's (``ServiceRuntime.transaction``); the events fired go out through its
        ``emit``, in one outbox insert (``stage_events``) before the commit. ``workers``: see ``run``."""
        self._transaction = transaction
        self._workers = workers
        self._batch = batch_size
        self._claim = claim_sql(batch_size)
        self._poll = poll_seconds
        self._clock = clock
        self.fired = 0  # events fired by this loop (for tests and the bench)
        self.claimed = 0  # rows claimed by the last fire_due
        self.lags: list[float] | None = None  # set to a list to record every fire lag (bench)
        self._more = asyncio.Event()

    async def fire_due(self) -> int:
        """Claim and fire one batch of due deadlines; returns how many events were emitted."""
        self.claimed, fired, _ = await self._fire_batch()
        return fired

    async def _fire_batch(self) -> tuple[int, int, float | None]:
        """One batch: (rows claimed, events emitted, seconds until the next fire time -- None after a full
        batch: more is due now)."""
        now = self._clock()
        async with self._transaction() as tx:
            session = tx.session
            await session.execute(_PLAN)
            rows = (await session.execute(self._claim, {"now": now})).all()
            if len(rows) >= self._batch:
                self._more.set()  # a full batch: more may be due, wake the other workers
            rows.sort(key=_due_order)  # RETURNING has no order: fire in due order
            staged: list[Envelope[Any]] = []
            fired: list[tuple[datetime, Deadline, Firing]] = []
            unreadable: list[tuple[Any, Exception]] = []
            for row in rows:
                try:
                    d = store.from_claimed(row)
                    firing = due_firing(d, now)  # what fire(d, now) fires; the claim made its state change
                    if firing is None:
                        continue  # claimed early: the claim put its computed next fire time back
                    staged.append(firing_event(d, firing, now))
                except Exception as exc:  # noqa: BLE001 - this row's own fault: park it, fire the others
                    unreadable.append((row, exc))
                    continue
                fired.append((row[_NEXT_AT], d, firing))
            for event in staged:
                await tx.emit(event)  # staged: one multi-row outbox insert as the transaction ends
            if unreadable:
                await session.execute(_PARK, {"ids": [r.id for r, _ in unreadable],
                                              "at_risk": [r.at_risk_fired_at for r, _ in unreadable],
                                              "breach": [r.breach_fired_at for r, _ in unreadable]})
            wait = None if len(rows) >= self._batch else self._until((await session.execute(_NEXT)).scalar())
        for row, exc in unreadable:
            metrics.UNREADABLE.labels(type(exc).__name__).inc()
            log.error("sla deadline row unreadable; parked (status 'unreadable'), the others fire",
                      extra={"lead_id": row.lead_id, "deadline_id": row.id, "error": type(exc).__name__,
                             "detail": describe(exc, limit=300)})
        self._report(fired, utcnow())
        self.fired += len(staged)
        return len(rows), len(staged), wait

    def _report(self, fired: list[tuple[datetime, Deadline, Firing]], committed: datetime) -> None:
        """Metrics for a committed batch (counters once per label set), a DEBUG line per firing, one INFO line."""
        if not fired:
            return
        counts: Counter[tuple[Firing, str, str, str]] = Counter()
        lag_of = {f: metrics.FIRE_LAG.labels(f.value) for f in Firing}
        debug = log.isEnabledFor(logging.DEBUG)
        worst = 0.0
        for due, d, firing in fired:
            lag = max((committed - due).total_seconds(), 0.0)
            worst = max(worst, lag)
            lag_of[firing].observe(lag)
            counts[(firing, d.policy, metrics.team_label(d.team), d.kind.value)] += 1
            if self.lags is not None:
                self.lags.append(lag)
            if debug:
                log.debug("sla %s fired", firing.value, extra={"lead_id": d.lead_id, "deadline_id": d.id,
                                                              "kind": d.kind.value, "lag_seconds": round(lag, 4)})
        for (firing, *labels), n in counts.items():
            (metrics.BREACHES if firing == Firing.BREACH else metrics.AT_RISK).labels(*labels).inc(n)
        by_firing = Counter(f.value for _, _, f in fired)
        log.info("sla deadlines fired", extra={"breaches": by_firing[Firing.BREACH.value],
                                              "at_risk": by_firing[Firing.AT_RISK.value],
                                              "max_lag_seconds": round(worst, 4)})

    def _until(self, next_fire_at: datetime | None) -> float:
        """Seconds to sleep before the next claim: until ``next_fire_at``, at most the poll interval."""
        if next_fire_at is None:
            return self._poll
        return min(max((next_fire_at - self._clock()).total_seconds(), 0.0), self._poll)

    async def seconds_to_next(self) -> float:
        async with self._transaction() as tx:
            return self._until((await tx.session.execute(_NEXT)).scalar())

    async def run(self) -> None:
        """``workers`` loops claiming batches side by side (SKIP LOCKED gives each its own rows), so one
        batch's round trips and commit overlap the next batch's Python work. Only the first polls while
        nothing is due; the others wait until a full batch wakes them."""
        await asyncio.gather(*(self._work(polls=i == 0) for i in range(self._workers)))

    async def _work(self, polls: bool) -> None:
        backoff = 0.5
        while True:
            try:
                _, _, wait = await self._fire_batch()
                if wait is None:
                    continue  # a full batch: more is due, keep going
                backoff = 0.5
                self._more.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.02) if polls else None):
                        await self._more.wait()
            except asyncio.CancelledError:
                raise
            except Exception:  # database gone: the deadlines wait in their table
                metrics.TIMER_ERRORS.inc()
                log.exception("timer iteration failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
