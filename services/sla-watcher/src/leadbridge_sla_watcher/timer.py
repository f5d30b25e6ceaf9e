"""The timer loop: claims due deadlines from PostgreSQL and fires them through the outbox.

One iteration, in one transaction:

    SELECT ... FROM deadlines WHERE status = 'open' AND next_fire_at <= now
    ORDER BY next_fire_at LIMIT :batch FOR UPDATE SKIP LOCKED

then, per row, the pure ``fire`` decides at-risk or breach; the events go into the outbox and the rows
are marked fired, and the transaction commits. A row that cannot be read (a corrupted value, a bug) is
parked with status ``unreadable`` in the same transaction, logged and counted, and the others fire: one bad
row never stops the timer for everyone. A crash before the commit fires nothing (the rows are
claimed again after the restart); after it, the rows are no longer due: nothing fires twice. Replicas
skip each other's locked rows, so they share the work and never double-fire. Event ids are derived from
the deadline id and the firing, so even a replay would be deduplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import SlaAtRisk, SlaBreached
from leadbridge_events.clock import Clock, utcnow
from leadbridge_events.failures import describe
from leadbridge_events.transaction import Transactions
from sqlalchemy import bindparam, func, select, update

from . import metrics, store
from .deadlines import Deadline, Firing, Status, fire
from .tables import deadlines

log = logging.getLogger("leadbridge.sla_watcher.timer")
SOURCE = "sla-watcher"
_EVENT_NS = uuid.UUID("5b3c1f0e-8d7a-4b7e-9a51-2f4c6d8e0a11")


def firing_event(d: Deadline, firing: Firing, fired_at: datetime) -> Envelope[Any]:
    common = dict(lead_id=d.lead_id, deadline_id=d.id, policy=d.policy, kind=d.kind, assignee_id=d.assignee_id,
                  team=d.team, due_at=d.due_at, fired_at=fired_at, routing_attempt=d.attempt)
    data = SlaAtRisk(**common) if firing == Firing.AT_RISK else SlaBreached(**common, escalate=d.escalate)
    event_id = str(uuid.uuid5(_EVENT_NS, f"{d.id}:{firing.value}"))
    return Envelope.of(data, source=SOURCE, lead_id=d.lead_id, event_id=event_id, time=fired_at)


_MARK = (
    update(deadlines).where(deadlines.c.id == bindparam("d_id"))
    .values(status=bindparam("d_status"), next_fire_at=bindparam("d_next"),
            at_risk_fired_at=bindparam("d_at_risk"), breach_fired_at=bindparam("d_breach"))
)


class TimerLoop:
    def __init__(self, transaction: Transactions, *, batch_size: int = 500, poll_seconds: float = 0.2,
                 clock: Clock = utcnow) -> None:
        """``transaction``: the runtime's (``ServiceRuntime.transaction``); the events fired go out through its
        ``emit``, in one outbox insert with the rows' marks."""
        self._transaction = transaction
        self._batch = batch_size
        self._poll = poll_seconds
        self._clock = clock
        self.fired = 0  # events fired by this loop (for tests and the bench)
        self.lags: list[float] | None = None  # set to a list to record every fire lag (bench)

    async def fire_due(self) -> int:
        """Claim and fire one batch of due deadlines; returns how many events were emitted."""
        now = self._clock()
        async with self._transaction() as tx:
            session = tx.session
            rows = (await session.execute(
                select(deadlines).where(deadlines.c.status == "open", deadlines.c.next_fire_at <= now)
                .order_by(deadlines.c.next_fire_at).limit(self._batch).with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0
            events, marks, fired, unreadable = [], [], [], []
            for row in rows:
                try:
                    before = store.from_row(row)
                    after, firing = fire(before, now)
                    event = firing_event(after, firing, now) if firing is not None else None
                except Exception as exc:  # noqa: BLE001 - this row's own fault: park it, fire the others
                    unreadable.append((row, exc))
                    continue
                if event is None or firing is None:
                    continue
                events.append(event)
                marks.append({"d_id": after.id, "d_status": after.status.value, "d_next": after.next_fire_at,
                              "d_at_risk": after.at_risk_fired_at, "d_breach": after.breach_fired_at})
                fired.append((before.next_fire_at, after, firing))
            if events:
                for event in events:
                    await tx.emit(event)
                await session.execute(_MARK, marks)
            if unreadable:
                await session.execute(update(deadlines).where(deadlines.c.id.in_([r.id for r, _ in unreadable]))
                                      .values(status=Status.UNREADABLE.value, next_fire_at=None))
        for row, exc in unreadable:
            metrics.UNREADABLE.labels(type(exc).__name__).inc()
            log.error("sla deadline row unreadable; parked (status 'unreadable'), the others fire",
                      extra={"lead_id": row.lead_id, "deadline_id": row.id, "error": type(exc).__name__,
                             "detail": describe(exc, limit=300)})
        committed = utcnow()
        for due, d, firing in fired:
            lag = max((committed - due).total_seconds(), 0.0)
            metrics.FIRE_LAG.labels(firing.value).observe(lag)
            counter = metrics.BREACHES if firing == Firing.BREACH else metrics.AT_RISK
            counter.labels(d.policy, metrics.team_label(d.team), d.kind.value).inc()
            if self.lags is not None:
                self.lags.append(lag)
            log.info("sla %s fired", firing.value, extra={"lead_id": d.lead_id, "deadline_id": d.id,
                                                         "kind": d.kind.value, "lag_seconds": round(lag, 4)})
        self.fired += len(events)
        return len(events)

    async def seconds_to_next(self) -> float:
        async with self._transaction() as tx:
            nxt = (await tx.session.execute(
                select(func.min(deadlines.c.next_fire_at)).where(deadlines.c.status == "open")
            )).scalar()
        if nxt is None:
            return self._poll
        return min(max((nxt - self._clock()).total_seconds(), 0.0), self._poll)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                n = await self.fire_due()
                if n >= self._batch:
                    continue  # more is due: keep going
                backoff = 0.5
                wait = await self.seconds_to_next()
                await asyncio.sleep(max(wait, 0.02))
            except asyncio.CancelledError:
                raise
            except Exception:  # database gone: the deadlines wait in their table
                metrics.TIMER_ERRORS.inc()
                log.exception("timer iteration failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
