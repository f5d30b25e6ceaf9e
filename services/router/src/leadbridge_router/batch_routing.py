"""lead-scored in batches: a batch's routings decided in memory, written with a handful of multi-row statements.

In the batch's one transaction (the consumer runner's), four statements whatever its size (``batch_store``,
constant SQL on the driver):

1. every lead row of the batch is read and locked in one statement (lead id order), with the roster's
   version (the roster itself is parsed once per version), then every pool the batch's routings may need
   is locked in one statement (name order), and the pools' states (their reps' counters) read after it: the
   one fixed order every path takes (lead, then pools by name), so replicas never deadlock however many
   leads and pools a batch holds;
2. the capped reps' loads are read once (none without caps); then each event is decided in order by the
   same pure ``routing.decide`` as on its own, and its effect (``assigner.plan``) is applied to the
   in-memory states and loads and lead rows, so each routing sees the ones before it: caps hold exactly,
   per-lead order is kept;
3. the writes go out in one round trip: one multi-row upsert of the leads, one multi-row insert of the
   assignments, one of the reps' counters, one update of the pools' virtual times. The lead-routed events
   are emitted in order (the runner's one outbox insert).

An event this path does not decide -- a routed lead sent back to nurture, or one waiting for capacity that
stops waiting (``handlers.recycle``: releases an assignment, may route a waiting lead) -- first has what is
pending written, then runs as on its own, and the states are read again after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from leadbridge_contracts import Envelope, LeadScored, Stage
from leadbridge_events.transaction import BatchContext
from sqlalchemy.ext.asyncio import AsyncSession

from . import assigner, batch_store, handlers, metrics, store
from .availability import RepLoad
from .batch_store import JsonText
from .fairness import PoolState
from .roster import Roster, Rule
from .routing import decide, entry_point, pool_chain
from .rules import LeadFacts

log = logging.getLogger("leadbridge.router")


async def lock_and_read_leads(session: AsyncSession, lead_ids: list[str]) -> dict[str, Any]:
    """The batch's lead rows (those that exist), locked in lead id order, in one statement."""
    return (await batch_store.lock_and_read_leads(session, lead_ids))[1]


class BatchRouting:
    """The routings of one batch, decided in memory over its locked pools, written in one round trip."""

    def __init__(self, session: AsyncSession, roster: Roster, pools: tuple[dict[str, float], dict[str, PoolState]],
                 now: datetime) -> None:
        self._session = session
        self._roster = roster
        self._vtimes, states = pools  # locked, read: ``lock_pool_states``
        self._now = now
        self._states: dict[str, PoolState] | None = states
        self._fresh = True  # the states are as read (their reps' loads not read yet)
        self._loads: dict[str, RepLoad] = {}
        self._leads: dict[str, dict[str, Any]] = {}
        self._assignments: list[dict[str, Any]] = []
        self._counters: dict[tuple[str, str], dict[str, Any]] = {}
        self.outcomes: Counter[str] = Counter()  # the batch's routings by outcome (its INFO log line)

    async def _load(self) -> dict[str, PoolState]:
        if self._states is None:  # written meanwhile (by this batch, or a one-event path): read again
            self._vtimes, self._states = await store.lock_pool_states(self._session, sorted(self._vtimes))
            self._fresh = True
        if self._fresh:
            members = [r for p in self._vtimes for r in self._roster.members(p)]
            self._loads = await store.open_loads(self._session, members, self._now)
            self._fresh = False
        return self._states

    async def route(self, lead_row: Any, data: LeadScored, caused_by: Envelope[Any], facts: LeadFacts,
                    entry: tuple[Rule | None, str | None]) -> tuple[Any, Any]:
        """Decide one lead (as ``assigner.route`` does) and apply it in memory: (the lead's new row, event).
        ``facts`` and ``entry`` are ``assigner.facts_of(data)`` and its ``entry_point``."""
        states = await self._load()
        start = entry[1]
        decision = decide(self._roster, facts, states, self._loads, self._now, entry=entry)
        snapshot = JsonText(data.model_dump_json())  # stored as the lead's event: the JSON of model_dump
        applied = assigner.plan(self._roster, decision, states, data.lead_id, self._now, lead_row=lead_row,
                                facts=facts, event=snapshot, caused_by=caused_by, start=start, scored=data,
                                log_level=logging.DEBUG)
        if applied is None:
            return lead_row, None
        self.outcomes[decision.outcome] += 1
        if applied.pool_state is not None:
            pool, state, rep_id = applied.pool_state
            states[pool] = state
            c = state.counter(rep_id)
            self._counters[(pool, rep_id)] = {"pool": pool, "rep_id": rep_id, "pass": c.pass_,
                                              "assigned": c.assigned, "last_assigned_at": c.last_assigned_at}
        if applied.assignment is not None:
            self._assignments.append(applied.assignment)
            rep = applied.assignment["rep_id"]
            load = self._loads.get(rep, RepLoad())
            self._loads[rep] = RepLoad(load.assigned_at + (self._now,), load.open_count + 1)
        self._leads[data.lead_id] = {"lead_id": data.lead_id, **applied.lead}
        base = vars(lead_row) if lead_row is not None else {}
        return SimpleNamespace(**{**base, "lead_id": data.lead_id, **applied.lead}), applied.event

    async def flush(self) -> None:
        """Write what is pending (one round trip), and forget the states: they are read again when needed."""
        if self._counters or self._assignments or self._leads:
            await batch_store.write_routings(self._session, self._pool_vtimes(), list(self._counters.values()),
                                       self._assignments, list(self._leads.values()))
        self._states, self._loads, self._leads, self._assignments, self._counters = None, {}, {}, [], {}

    def _pool_vtimes(self) -> dict[str, float]:
        if self._states is None:
            return {}
        return {p: self._states[p].vtime for p in sorted({p for p, _ in self._counters})}


def _needs_recycle(row: Any) -> bool:
    """``handlers.recycle`` changes something only for a lead that waits for capacity or is owned."""
    return row is not None and (row.waiting_since is not None or row.status in handlers.OWNED)


YIELD_EVERY = 50  # events: a batch of 500 is ~50 ms of CPU on one event loop, more on a loaded machine


async def on_lead_scored_batch(events: list[Envelope[LeadScored]], ctx: BatchContext[None]) -> None:
    """lead-scored, a batch in one transaction: the same effects, in the same order, as ``handlers.on_lead_scored``
    for each event (see the module's docstring)."""
    session = ctx.session
    version, rows = await batch_store.lock_and_read_leads(session, [e.lead_id for e in events])
    roster = await store.roster_at(session, version)
    pools: set[str] = set()
    entries: dict[str, tuple[LeadFacts, tuple[Rule | None, str | None]]] = {}  # event id -> facts, entry point
    for event in events:
        if handlers.wants_routing(event.data):
            facts = assigner.facts_of(event.data)
            entry = entry_point(roster, facts)
            entries[event.id] = facts, entry
            pools.update(pool_chain(roster, entry[1]) if entry[1] else ())
    batch = BatchRouting(session, roster, await store.lock_pool_states(session, sorted(pools)), ctx.now())
    for i, event in enumerate(events):
        if i and i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let the express lane and the fetchers run between chunks of a long batch
        data: LeadScored = event.data
        row = rows.get(data.lead_id)
        if not handlers.wants_routing(data):
            if data.stage == Stage.NURTURE and _needs_recycle(row):
                await batch.flush()  # the one-event path reads what the batch wrote so far
                await handlers.recycle(ctx.for_event(event), data, event)
                rows = await lock_and_read_leads(session, [e.lead_id for e in events])  # held already: fresh
            metrics.SKIPPED.labels("not_sales_ready").inc()
            continue
        if row is not None and row.status == handlers.CLOSED:
            metrics.SKIPPED.labels("already_closed").inc()
            log.info("lead is closed; not routing it again",
                     extra={"lead_id": data.lead_id, "event_id": event.id, "outcome": row.closed_outcome})
            continue
        if row is not None and row.status in handlers.OWNED:
            metrics.SKIPPED.labels("already_owned").inc()
            log.info("lead already routed; not routing again",
                     extra={"lead_id": data.lead_id, "event_id": event.id, "status": row.status})
            continue
        rows[data.lead_id], routed = await batch.route(row, data, event, *entries[event.id])
        if routed is not None:
            await ctx.emit(routed)
    await batch.flush()
    if batch.outcomes:
        log.info("leads routed", extra={"leads": sum(batch.outcomes.values()), "outcomes": dict(batch.outcomes)})
