"""Routes leads held for off-hours pools once their shift starts, and drains the capacity waiting list
(slots freed by a new local day/week or a roster change). Safe with several replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from leadbridge_contracts import Envelope
from leadbridge_events.outbox import add_to_outbox
from sqlalchemy.ext.asyncio import async_sessionmaker

from . import assigner, db, store, waitlist
from .rules import LeadFacts

log = logging.getLogger("leadbridge.router.scheduler")


async def route_due_held(sessions: async_sessionmaker, now: datetime) -> int:
    """Route every held lead whose hold has expired; returns how many. Rows are claimed with SKIP LOCKED."""
    async with sessions() as session, session.begin():
        async def emit(event: Envelope[Any]) -> None:
            await add_to_outbox(session, db.outbox, event)

        rows = await store.due_held_leads(session, now)
        for row in rows:
            await assigner.route(session, emit, row.lead_id, now, lead_row=row, facts=LeadFacts(**row.facts),
                                 event=row.event, pool=row.pool, rule_id=row.rule,
                                 exclude=frozenset(row.previous_assignees), why="shift started")
        return len(rows)


async def drain_waiting(sessions: async_sessionmaker, now: datetime, max_routes: int = 50) -> int:
    """Route waiting (capacity-nurtured) leads that some rep can take now; returns how many."""
    async with sessions() as session, session.begin():
        async def emit(event: Envelope[Any]) -> None:
            await add_to_outbox(session, db.outbox, event)

        return await waitlist.fill_freed_slots(session, emit, now, max_routes=max_routes, scan=max_routes * 2)


async def run_hold_scheduler(sessions: async_sessionmaker, clock: Callable[[], datetime], every: float) -> None:
    while True:
        try:
            await route_due_held(sessions, clock())
            await drain_waiting(sessions, clock())
        except asyncio.CancelledError:
            raise
        except Exception:  # database away: try again next round
            log.exception("held-lead scheduler round failed")
        await asyncio.sleep(every)
