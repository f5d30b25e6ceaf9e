"""Every event type through the real broker, validated on both ends; per-lead order across partitions."""

from __future__ import annotations

import json
import random
import uuid

import jsonschema
import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadActivityRecorded
from leadbridge_contracts.topics import Topic
from leadbridge_events import schema_export
from leadbridge_events.admin import ensure_topics
from leadbridge_events.testing import collect_records

from .samples import NOW, samples

pytestmark = pytest.mark.integration


async def test_every_event_type_round_trips_through_kafka(kafka_bootstrap, producer, topic):
    lead_id = f"lead-{uuid.uuid4()}"
    sent = [Envelope.of(d, source="test", lead_id=lead_id) for d in samples(lead_id)]
    for event in sent:
        # validate on the producing end
        schema = json.loads((schema_export.SCHEMA_DIR / f"{event.type}.v1.json").read_text())
        jsonschema.validate(json.loads(event.kafka_value()), schema)
        metadata = await producer.send(event, topic=topic.name)
        assert metadata.offset >= 0
    records = await collect_records(kafka_bootstrap, [topic.name], match=lambda r: r.key == lead_id.encode(),
                                    until=lambda m: len(m) >= len(sent))
    received = []
    for record in records:
        event = Envelope.from_kafka(record.key, record.value, record.headers)  # validates the model
        schema = json.loads((schema_export.SCHEMA_DIR / f"{event.type}.v1.json").read_text())
        jsonschema.validate(json.loads(record.value), schema)  # and the published schema
        received.append(event)
    assert received == sent
    assert len({r.partition for r in records}) == 1, "one lead, one partition"


async def test_events_of_each_lead_arrive_in_order_across_partitions(kafka_bootstrap, producer, unique_name):
    topic = Topic(f"{unique_name}-ordering", ("lead-activity-recorded",), partitions=6)
    await ensure_topics(kafka_bootstrap, [topic])
    leads = [f"lead-{i}-{uuid.uuid4().hex[:6]}" for i in range(60)]
    per_lead = 25
    plan = [(lead, seq) for lead in leads for seq in range(per_lead)]
    # interleave leads, but keep each lead's own sequence in order
    random.Random(7).shuffle(plan)
    next_seq = {lead: 0 for lead in leads}
    ordered = []
    for lead, _ in plan:
        ordered.append((lead, next_seq[lead]))
        next_seq[lead] += 1
    records = [
        Envelope.of(LeadActivityRecorded(lead_id=lead, activity_id=str(seq), occurred_at=NOW, kind="visit"),
                    source="test", lead_id=lead)
        for lead, seq in ordered
    ]
    await producer.send_many_raw((topic.name, e.kafka_key(), e.kafka_value(), e.kafka_headers()) for e in records)

    got = await collect_records(kafka_bootstrap, [topic.name], until=lambda m: len(m) >= len(records), timeout=60)
    assert len({r.partition for r in got}) > 1, "the leads spread over several partitions"
    seen: dict[str, list[int]] = {}
    partition_of: dict[str, set[int]] = {}
    for record in got:
        event = Envelope.from_kafka(record.key, record.value, record.headers)
        seen.setdefault(event.lead_id, []).append(int(event.data.activity_id))
        partition_of.setdefault(event.lead_id, set()).add(record.partition)
    assert set(seen) == set(leads)
    for lead in leads:
        assert seen[lead] == list(range(per_lead)), f"{lead} out of order"
        assert len(partition_of[lead]) == 1
