"""The handler registry (pure): topics derived from the table, undeclared emits refused, unknown types skipped."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadActivityRecorded, LeadCaptured, LeadScored, SlaBreached
from leadbridge_contracts.topics import topic_for
from leadbridge_events import metrics
from leadbridge_events.clock import utcnow
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import HandlerContext, Transaction, UndeclaredEmit
from sqlalchemy import Column, MetaData, String, Table

from .samples import NOW, samples


async def nothing(event, ctx) -> None:
    return None


async def nothing_many(events, ctx) -> None:
    return None


def sample(event_type: str) -> Envelope:
    data = next(s for s in samples("lead-1") if s.event_type == event_type)
    return Envelope.of(data, source="test", lead_id=getattr(data, "lead_id", "roster"))


TABLE = EventHandlers(
    on(LeadCaptured, nothing, batch=nothing_many),
    on(LeadActivityRecorded, nothing),
    on(FollowUpLogged, nothing),
    emits=(LeadScored,),
)


def test_topics_are_derived_from_the_event_types_once_each_in_declaration_order() -> None:
    assert TABLE.topics == ("lead-captured", "follow-up-logged")  # two types share lead-captured
    assert TABLE.consumes == (LeadCaptured, LeadActivityRecorded, FollowUpLogged)
    assert TABLE.emits == (LeadScored,) and TABLE.sends_to == ("lead-scored",)
    assert TABLE["lead-captured"].batch is nothing_many and TABLE.get("lead-scored") is None


def test_a_type_handled_twice_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="two handlers"):
        EventHandlers(on(LeadCaptured, nothing), on(LeadCaptured, nothing))


async def test_emit_refuses_an_event_type_the_service_did_not_declare() -> None:
    tx = HandlerContext(session=None, outbox=_outbox(), emits=TABLE.emitted_types, service="scoring")  # type: ignore[arg-type]
    await tx.emit(sample("lead-scored"))
    with pytest.raises(UndeclaredEmit, match="'sla-breached' but does not declare it"):
        await tx.emit(sample("sla-breached"))
    assert [e.type for e in tx.emitted] == ["lead-scored"], "the refused event was not staged"
    with pytest.raises(UndeclaredEmit):
        await Transaction(session=None).emit(sample("lead-scored"))  # type: ignore[arg-type]  # declares nothing


def test_now_is_the_runtimes_clock() -> None:
    assert Transaction(session=None, clock=lambda: NOW).now() == NOW  # type: ignore[arg-type]
    assert Transaction(session=None).clock is utcnow  # type: ignore[arg-type]


def _outbox() -> Table:
    return Table("outbox", MetaData(schema="t"), Column("event_id", String))


def _record(event: Envelope, offset: int = 0) -> ConsumerRecord:
    topic = topic_for(event.type).name
    return ConsumerRecord(topic, 0, offset, 0, 0, event.lead_id.encode(), event.kafka_value(), None, 0, 0,
                          event.kafka_headers())


def _runner(group: str, table: EventHandlers = TABLE) -> ConsumerRunner:
    # sessions=None: an ignored event must never open a transaction
    return ConsumerRunner(bootstrap_servers="127.0.0.1:1", group_id=group, handlers=table, sessions=None,  # type: ignore[arg-type]
                          processed=_outbox(), producer=None)  # type: ignore[arg-type]


async def test_an_event_type_without_a_handler_is_skipped_and_counted_once_on_both_paths() -> None:
    breached = sample("sla-breached")
    runner = _runner("registry-unknown", EventHandlers(on(SlaBreached, nothing)))
    scored = sample("lead-scored")  # lead-scored has no handler in this table
    ignored = metrics.EVENTS_IGNORED.labels("registry-unknown", "lead-scored", "lead-scored")
    before = ignored._value.get()
    await runner._handle(_record(scored))  # the one-record path
    assert ignored._value.get() == before + 1
    assert await runner._apply_batch([scored, scored], [_record(scored), _record(scored, 1)]) == {}
    assert ignored._value.get() == before + 3  # the batch path: each event once, no transaction opened
    assert runner.topics == ("sla-breached",) and breached.type in runner.handlers
