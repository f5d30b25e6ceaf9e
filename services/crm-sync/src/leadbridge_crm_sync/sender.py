"""The background sender: drains the delivery queue, one destination per transaction, and records every attempt.

Per destination and round, in one transaction: lock the destination row (SKIP LOCKED: replicas share the
work), take its due head-of-line deliveries, send them (one HubSpot batch, or one request per delivery),
then store each outcome, its attempt in the delivery log, a ``crm-delivery-recorded`` event (outbox), and
the destination's health. A crash before the commit sends again after the restart with the same
``webhook-id`` (receivers dedupe), and CRMs are upserted idempotently.

An endpoint-level failure blocks the whole destination until its next retry (one probe per step of the
schedule, not one request per queued lead); failing without a success for ``pause_after`` pauses it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import CrmDeliveryRecorded
from leadbridge_events.failures import describe, is_transient
from leadbridge_events.transaction import Transaction, Transactions
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics, queue, webhooks
from .policy import DEAD, DELIVERED, FAILED, SKIPPED, Outcome, next_attempt_at, should_pause
from .settings import CrmSyncSettings
from .tables import deliveries, delivery_attempts, destinations, subscriptions

log = logging.getLogger("leadbridge.crm_sync.sender")
SOURCE = "crm-sync"


class Adapter(Protocol):
    async def send(self, batch: list[queue.Delivery], now: datetime) -> dict[str, Outcome]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookAdapter:
    """Sends to one subscription, in order, stopping at the first sign the endpoint is down."""

    def __init__(self, subscription: Any, http: httpx.AsyncClient) -> None:
        self._sub = subscription
        self._http = http

    async def send(self, batch: list[queue.Delivery], now: datetime) -> dict[str, Outcome]:
        keys = webhooks.signing_secrets(self._sub, now)
        outcomes: dict[str, Outcome] = {}
        for d in batch:
            outcomes[d.delivery_id] = outcome = await webhooks.post(self._http, self._sub.url, d, keys, now)
            if outcome.endpoint_down:
                break
        return outcomes


class Sender:
    def __init__(self, transaction: Transactions, settings: CrmSyncSettings, http: httpx.AsyncClient,
                 crm_adapters: Mapping[str, Adapter], *, clock: Callable[[], datetime] = utcnow,
                 rng: random.Random | None = None, concurrency: int = 6) -> None:
        """``transaction``: the runtime's (``ServiceRuntime.transaction``): each destination's round is one."""
        self._transaction = transaction
        self._settings = settings
        self._http = http
        self._crm = dict(crm_adapters)
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)

    def wake(self, *_: Any) -> None:
        """New deliveries were committed (wired to the consumer's on_committed): look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database restarting: wait it out, the queue is durable
                if is_transient(exc):
                    log.warning("sender round failed (outage); retrying", extra={"error": describe(exc)})
                else:
                    log.exception("sender round failed; retrying")
                sent = 0
            if sent == 0:
                try:
                    async with asyncio.timeout(self._settings.sender_poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def drain_once(self) -> int:
        """One round over every destination with due deliveries; returns how many attempts were made."""
        async with self._transaction() as tx:
            due = await queue.due_destinations(tx.session, self._clock())
        counts = await asyncio.gather(*(self._drain(dest) for dest in due))
        return sum(counts)

    async def _drain(self, destination: str) -> int:
        async with self._slots, self._transaction() as tx:
            session, now = tx.session, self._clock()
            if await queue.lock_destination(session, destination, now) is None:
                return 0
            adapter = await self._adapter(session, destination, now)
            if adapter is None:
                return 0
            batch = await queue.claim_heads(session, destination, now, self._settings.sender_batch_size)
            if not batch:
                return 0
            outcomes = await adapter.send(batch, now)
            done = self._clock()
            retry_at: list[datetime] = []  # when the deliveries that found the endpoint down are due again
            for d in batch:
                if d.delivery_id in outcomes:
                    nxt = await self._record(tx, d, outcomes[d.delivery_id], done)
                    if outcomes[d.delivery_id].endpoint_down:
                        retry_at.append(nxt or done)
            await self._update_health(session, destination, list(outcomes.values()), min(retry_at, default=done),
                                      done)
            return len(outcomes)

    async def _adapter(self, session: AsyncSession, destination: str, now: datetime) -> Adapter | None:
        kind, _, name = destination.partition(":")
        if kind == "webhook":
            sub = (await session.execute(select(subscriptions).where(subscriptions.c.id == name))).first()
            if sub is None:
                await queue.cancel_pending(session, destination, now, "subscription deleted")
                return None
            return WebhookAdapter(sub, self._http)
        adapter = self._crm.get(destination)
        if adapter is None:  # removed from the config file: keep the rows, say so
            log.warning("deliveries queued for an unconfigured destination", extra={"destination": destination})
        return adapter

    async def _record(self, tx: Transaction, d: queue.Delivery, o: Outcome, now: datetime) -> datetime | None:
        """Store one attempt's outcome; returns when the delivery is retried (None: it is finished)."""
        session = tx.session
        attempt = d.attempts + 1
        nxt = None
        if o.ok:
            result, status = DELIVERED, "delivered"
        elif o.skipped:
            result, status = SKIPPED, "skipped"
        elif o.permanent:
            result, status = DEAD, "dead"
        else:
            s = self._settings
            nxt = next_attempt_at(attempt, s.retry_schedule_seconds, now, jitter=s.retry_jitter, rng=self._rng,
                                  retry_after=o.retry_after, max_retry_after=s.max_retry_after_seconds)
            result, status = (FAILED, "pending") if nxt else (DEAD, "dead")
        await session.execute(update(deliveries).where(deliveries.c.id == d.id).values(
            status=status, attempts=attempt, next_attempt_at=nxt or now, last_status_code=o.status_code,
            last_error=o.error, crm_record_id=o.record_id,
            finished_at=None if status == "pending" else now))
        await session.execute(delivery_attempts.insert().values(
            delivery_id=d.delivery_id, lead_id=d.lead_id, destination=d.destination, attempt=attempt, result=result,
            status_code=o.status_code, error=o.error, attempted_at=now))
        if o.ok and o.record_id:
            await queue.remember_record(session, d.destination, d.lead_id, o.record_id, o.owner_id)
        event = Envelope.of(CrmDeliveryRecorded(
            lead_id=d.lead_id, delivery_id=d.delivery_id, destination=d.destination,
            destination_kind=queue.kind_of(d.destination), delivered_event_id=d.event_id,
            delivered_event_type=d.event_type, attempt=attempt, result=result, status_code=o.status_code,
            error=o.error, next_attempt_at=nxt, crm_record_id=o.record_id, recorded_at=now,
        ), source=SOURCE, lead_id=d.lead_id, time=now)
        await tx.emit(event)
        metrics.DELIVERIES.labels(d.destination, result).inc()
        if o.ok:
            metrics.DELIVERY_LAG.labels(d.destination).observe(max((now - d.event_time).total_seconds(), 0.0))
        extra = {"lead_id": d.lead_id, "event_id": d.event_id, "destination": d.destination, "attempt": attempt,
                 "result": result, "status_code": o.status_code}
        (log.info if o.ok else log.warning)("delivery attempt", extra={**extra, "error": o.error})
        return nxt

    async def _update_health(self, session: AsyncSession, destination: str, outcomes: list[Outcome],
                             probe: datetime, now: datetime) -> None:
        """A success heals the endpoint; an endpoint-level failure blocks it until ``probe`` (the next retry)."""
        x = destinations
        if any(o.ok for o in outcomes) or not any(o.endpoint_down for o in outcomes):
            if any(o.ok for o in outcomes):
                await session.execute(update(x).where(x.c.id == destination).values(
                    failing_since=None, blocked_until=None, last_success_at=now, last_error=None))
            return
        down = next(o for o in outcomes if o.endpoint_down)
        row = (await session.execute(update(x).where(x.c.id == destination).values(
            failing_since=func.coalesce(x.c.failing_since, now), blocked_until=probe, last_error=down.error,
        ).returning(x.c.failing_since))).first()
        if row and should_pause(row.failing_since, now, self._settings.pause_after_seconds):
            await session.execute(update(x).where(x.c.id == destination).values(paused_at=now))
            metrics.PAUSED.labels(destination).set(1)
            log.error("destination paused: failing for too long", extra={"destination": destination,
                                                                          "error": down.error})


async def measure(sessions: async_sessionmaker, now: datetime) -> None:
    """Refresh the per-destination gauges (pending, oldest pending age, dead letters, failing, paused)."""
    d, x = deliveries, destinations
    async with sessions() as session:
        stats = (await session.execute(select(
            d.c.destination, func.count().filter(d.c.status == "pending").label("pending"),
            func.count().filter(d.c.status == "dead").label("dead"),
            func.min(d.c.created_at).filter(d.c.status == "pending").label("oldest"),
        ).where(d.c.status.in_(["pending", "dead"])).group_by(d.c.destination))).all()
        health = (await session.execute(select(x))).all()
    by_dest = {s.destination: s for s in stats}
    for h in health:
        s = by_dest.get(h.id)
        metrics.PENDING.labels(h.id).set(s.pending if s else 0)
        metrics.DEAD_LETTERS.labels(h.id).set(s.dead if s else 0)
        metrics.OLDEST_PENDING.labels(h.id).set((now - s.oldest).total_seconds() if s and s.oldest else 0)
        metrics.FAILING_SECONDS.labels(h.id).set((now - h.failing_since).total_seconds() if h.failing_since else 0)
        metrics.PAUSED.labels(h.id).set(1 if h.paused_at else 0)


async def purge_finished(sessions: async_sessionmaker, before: datetime) -> int:
    """Delete deliveries finished (delivered, skipped, cancelled) before ``before``, with their attempts."""
    d = deliveries
    async with sessions() as session, session.begin():
        gone = (await session.execute(delete(d).where(
            d.c.status.in_(["delivered", "skipped", "cancelled"]), d.c.finished_at < before)
            .returning(d.c.delivery_id))).scalars().all()
        if gone:
            await session.execute(delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(gone)))
    return len(gone)


async def gauges_forever(sessions: async_sessionmaker, interval: float,
                         clock: Callable[[], datetime] = utcnow, retention_days: float = 30) -> None:
    last_purge = None
    while True:
        try:
            now = clock()
            if last_purge is None or (now - last_purge).total_seconds() > 3600:
                await purge_finished(sessions, now - timedelta(days=retention_days))
                last_purge = now
            await measure(sessions, clock())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the database may be restarting
            log.warning("crm-sync gauges not refreshed", exc_info=True)
        await asyncio.sleep(interval)
