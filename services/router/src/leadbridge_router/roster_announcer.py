"""Tell other services about the roster: ``roster-changed`` (the whole roster) after every change, and once
at start. Insights shows each rep's caps and availability from it; nothing in routing depends on it.

A change is detected by the roster version a trigger rewrites with every write to teams, reps or config
(migration 0003), read before and after an API transaction; the event goes through the outbox in that
same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any

from leadbridge_contracts import Envelope
from leadbridge_contracts.events import RosterChanged, RosterRep, RosterTeam
from leadbridge_events.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import db, store
from .roster import Roster

SOURCE = "router"
KEY = "roster"


def _when(value: datetime | date) -> str:
    return value.isoformat()


def roster_changed(roster: Roster, now: datetime) -> RosterChanged:
    """The announcement of a roster (pure)."""
    teams = [RosterTeam(id=t.id, name=t.name, overflow=t.overflow.kind, overflow_to=t.overflow.pool or t.overflow.owner)
             for t in roster.teams]
    reps = [RosterRep(id=r.id, name=r.name, team=r.team, active=r.active, weight=r.weight, daily_cap=r.daily_cap,
                      weekly_cap=r.weekly_cap, max_open=r.max_open, timezone=r.timezone, working_hours=r.working_hours,
                      out_of_office=[{"start": _when(o.start), "end": _when(o.end), "reason": o.reason}
                                     for o in r.out_of_office])
            for r in roster.reps]
    return RosterChanged(changed_at=now, teams=teams, reps=reps)


async def version(session: AsyncSession) -> Any:
    return (await session.execute(select(db.roster_version.c.version).where(db.roster_version.c.id == 1))).scalar()


async def announce(session: AsyncSession, emit: Callable[[Envelope[Any]], Awaitable[None]], now: datetime) -> None:
    roster = await store.load_roster(session)
    await emit(Envelope.of(roster_changed(roster, now), source=SOURCE, lead_id=KEY, time=now))


async def announce_if_changed(session: AsyncSession, emit: Callable[[Envelope[Any]], Awaitable[None]],
                              before: Any, now: datetime) -> None:
    if await version(session) != before:
        await announce(session, emit, now)


async def announce_at_start(transaction: Callable[[], AbstractAsyncContextManager[Transaction]]) -> None:
    """The current roster, once per start (a consumer that came later learns it without a change)."""
    async with transaction() as tx:
        if (await store.load_roster(tx.session)).teams:
            await announce(tx.session, tx.emit, tx.now())
