"""crm-sync's batch handler has exactly the effects of its one-event handlers, event by event, in order: the
same deliveries (ids, destinations, payloads, queue order), destinations and CRM owner mapping -- CRM
destinations per team, webhook subscriptions by type and team, a lead routed twice (its re-route queued
after its first routing, the later rep owning the CRM user), returns to nurture (no CRM delivery), SLA
events, and a replayed event (queued once). Against a real PostgreSQL, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import SlaAtRisk, SlaBreached
from leadbridge_crm_sync import tables
from leadbridge_crm_sync.config import CrmConfig
from leadbridge_crm_sync.handlers import HANDLERS, on_events
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_events.transaction import BatchContext, HandlerContext
from sqlalchemy import select

from .conftest import routed

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
CONFIG = CrmConfig.model_validate({
    "hubspot": {"main": {"portal_id": "1", "base_url": "http://127.0.0.1:9", "token": "t", "client_secret": "s"}},
    "salesforce": {"acme": {"organization_id": "00D000000000042AAA", "login_url": "http://127.0.0.1:9",
                            "client_id": "c", "client_secret": "s"}},
    "teams": {"hs": ["hubspot:main"], "both": ["hubspot:main", "salesforce:acme"], "*": ["salesforce:acme"]},
})
SUBSCRIPTIONS = [
    {"id": "all-routed", "url": "http://x/1", "event_types": ["lead-routed"], "teams": [], "secret": "s1"},
    {"id": "hs-routed-and-breaches", "url": "http://x/2", "event_types": ["lead-routed", "sla-breached"],
     "teams": ["hs"], "secret": "s2"},
    {"id": "at-risk", "url": "http://x/3", "event_types": ["sla-at-risk"], "teams": ["both"], "secret": "s3"},
]


def _sla(kind: type, lead_id: str, team: str) -> Envelope[Any]:
    data = kind(lead_id=lead_id, deadline_id="d1", policy="p", kind="first_touch", assignee_id="ada", team=team,
                due_at=NOW + timedelta(minutes=5), fired_at=NOW)
    return Envelope.of(data, source="sla-watcher", lead_id=lead_id)


def _events() -> list[Envelope[Any]]:
    first = routed("hs", lead_id="lead-a", rep="ada", hubspot_owner="71", sf_owner="005A")
    again = routed("hs", lead_id="lead-a", rep="bob", hubspot_owner="71", sf_owner="005B", attempt=2)
    return [
        first, routed("both", lead_id="lead-b", rep="cyd", hubspot_owner="72"),
        first,  # a replay under the same id: queued once
        _sla(SlaAtRisk, "lead-b", "both"), routed("nobody", lead_id="lead-c", rep="dee", sf_owner=""),
        routed("hs", lead_id="lead-d", outcome="returned_to_nurture"), again, _sla(SlaBreached, "lead-a", "hs"),
        _sla(SlaBreached, "lead-e", "other"),
    ]


async def _database(url: str) -> Any:
    engine = make_engine(url, pool_size=2)
    await migrate(engine, tables.metadata, migrations_dir("leadbridge_crm_sync"))
    async with engine.begin() as conn:
        await conn.execute(tables.subscriptions.insert(), SUBSCRIPTIONS)
    return engine


def _context(kind: type, session: Any) -> Any:
    return kind(session=session, outbox=tables.metadata.tables["crm_sync.outbox"], emits=HANDLERS.emitted_types,
                clock=lambda: NOW, deps=CONFIG)


async def _state(engine: Any) -> dict[str, list[tuple]]:
    d, x, o = tables.deliveries, tables.destinations, tables.crm_owners
    async with session_factory(engine)() as s:
        deliveries = (await s.execute(select(d.c.delivery_id, d.c.destination, d.c.lead_id, d.c.event_id,
                                             d.c.event_type, d.c.event_time, d.c.payload, d.c.status)
                                      .order_by(d.c.id))).all()
        destinations = (await s.execute(select(x.c.id, x.c.kind).order_by(x.c.id))).all()
        owners = (await s.execute(select(o.c.crm, o.c.owner_id, o.c.rep_id).order_by(o.c.crm, o.c.owner_id))).all()
    return {"deliveries": [tuple(r) for r in deliveries], "destinations": [tuple(r) for r in destinations],
            "owners": [tuple(r) for r in owners]}


async def test_a_batch_queues_what_its_events_queue_one_at_a_time_in_order(fresh_database_url, second_database_url):
    one, batch = await _database(fresh_database_url), await _database(second_database_url)
    events = _events()
    try:
        for event in events:
            async with session_factory(one)() as s, s.begin():
                await HANDLERS[event.type].handler(event, _context(HandlerContext, s))
        async with session_factory(batch)() as s, s.begin():
            await on_events(events, _context(BatchContext, s))
        expected, got = await _state(one), await _state(batch)
    finally:
        await one.dispose()
        await batch.dispose()
    assert got == expected
    queued = [(lead, dest) for _, dest, lead, *_ in expected["deliveries"]]
    assert queued[:3] == [("lead-a", "hubspot:main"), ("lead-a", "salesforce:acme"), ("lead-a", "webhook:all-routed")]
    assert ("lead-d", "hubspot:main") not in queued and ("lead-e", "webhook:hs-routed-and-breaches") not in queued
    assert ("lead-b", "webhook:at-risk") in queued and ("lead-a", "webhook:hs-routed-and-breaches") in queued
    assert len({delivery_id for delivery_id, *_ in expected["deliveries"]}) == len(queued) == 17
    assert ("hubspot", "71", "bob") in expected["owners"]  # the re-route's rep owns the CRM user now
