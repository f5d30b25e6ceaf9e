"""Routes leads held for off-hours pools once their shift starts, and drains the capacity waiting list
(slots freed by a new local day/week or a roster change). Safe with several replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from leadbridge_events.clock import Clock
from leadbridge_events.transaction import Transaction

from . import assigner, store, waitlist
from .rules import LeadFacts

log = logging.getLogger("leadbridge.router.scheduler")


Transactions = Callable[[], AbstractAsyncContextManager[Transaction]]  # ``ServiceRuntime.transaction``


async def route_due_held(transaction: Transactions, now: datetime) -> int:
    """Route every held lead whose hold has expired; returns how many. Rows are claimed with SKIP LOCKED."""
    async with transaction() as tx:
        rows = await store.due_held_leads(tx.session, now)
        for row in rows:
            await assigner.route(tx.session, tx.emit, row.lead_id, now, lead_row=row, facts=LeadFacts(**row.facts),
                                 event=row.event, pool=row.pool, rule_id=row.rule,
                                 exclude=frozenset(row.previous_assignees), why="shift started")
        return len(rows)


async def drain_waiting(transaction: Transactions, now: datetime, max_routes: int = 50) -> int:
    """Route waiting (capacity-nurtured) leads that some rep can take now; returns how many."""
    async with transaction() as tx:
        return await waitlist.fill_freed_slots(tx.session, tx.emit, now, max_routes=max_routes, scan=max_routes * 2)


async def run_hold_scheduler(transaction: Transactions, clock: Clock, every: float) -> None:
    while True:
        try:
            await route_due_held(transaction, clock())
            await drain_waiting(transaction, clock())
        except asyncio.CancelledError:
            raise
        except Exception:  # database away: try again next round
            log.exception("held-lead scheduler round failed")
        await asyncio.sleep(every)
