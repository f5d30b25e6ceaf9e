"""The pipelined relay: batches go out while earlier ones await their acknowledgements, never marked before them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_events.outbox import add_to_outbox
from leadbridge_events.producer import EventProducer
from leadbridge_events.relay import OutboxRelay
from leadbridge_events.testing import collect_records

from .test_consumer_runner import activity, wait_for
from .test_outbox import unsent

pytestmark = pytest.mark.integration


class GatedProducer(EventProducer):
    """A real producer whose acknowledgements reach the relay only once ``gate`` is open (a slow broker)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.gate = asyncio.Event()
        self.handed: list[str] = []  # the event ids handed to the producer, in order

    async def enqueue_many_raw(self, records):
        records = list(records)
        self.handed.extend(dict(headers)["ce_id"].decode() for _, _, _, headers in records)
        futures = await super().enqueue_many_raw(records)

        async def gated(future):
            await self.gate.wait()
            return await future

        return [asyncio.ensure_future(gated(f)) for f in futures]


async def write(backbone, topic, events):
    async with backbone.sessions() as session, session.begin():  # one commit: the relay finds them all at once
        for e in events:
            await add_to_outbox(session, backbone.outbox, e, topic=topic.name)
    return events


async def test_batches_in_flight_are_sent_once_in_order_and_marked_only_after_their_acknowledgements(
    backbone, kafka_bootstrap, topic
):
    leads = [f"lead-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    producer = GatedProducer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, batch_size=4, max_in_flight_batches=3)
    task = asyncio.create_task(relay.run())
    try:
        events = await write(backbone, topic, [activity(lead, s) for lead in leads for s in range(5)])  # 15 rows

        async def three_batches_handed():
            return len(producer.handed) >= 12

        await wait_for(three_batches_handed)
        await write(backbone, topic, [activity(leads[0], s) for s in range(5, 7)])  # a NOTIFY while three batches are in flight
        await asyncio.sleep(0.5)
        assert len(producer.handed) == 12, "no more than max_in_flight_batches batches in flight"
        assert len(set(producer.handed)) == 12, "a row in flight is never handed to the producer again"
        assert await unsent(backbone) == 17, "nothing is marked sent before the broker acknowledged it"

        producer.gate.set()

        async def drained():
            return await unsent(backbone) == 0

        await wait_for(drained)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
    assert producer.handed == [e.id for e in events] + producer.handed[15:], "handed over in id order"
    assert len(producer.handed) == 17
    records = await collect_records(kafka_bootstrap, [topic.name], match=lambda r: r.key.decode() in leads,
                                    until=lambda m: len(m) >= 17)
    await asyncio.sleep(0)
    for lead in leads:
        seqs = [int(_activity_id(r)) for r in records if r.key.decode() == lead]
        assert seqs == list(range(7 if lead == leads[0] else 5)), "each row once, in order per lead"


def _activity_id(record) -> str:
    from leadbridge_contracts.envelope import Envelope

    return str(Envelope.from_kafka(record.key, record.value, record.headers).data.activity_id)
