"""The producers' partitioner puts every key where Kafka's own rule (aiokafka's DefaultPartitioner, the Java
client's murmur2) does: a lead's events on one partition, whichever client wrote them."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadActivityRecorded
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics
from leadbridge_events.partitioner import KeyPartitioner, murmur2

from .samples import samples


def test_murmur2_is_kafkas_for_every_length_and_byte():
    rng = random.Random(16)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(80) for _ in range(20)]
    keys += [str(uuid.uuid4()).encode() for _ in range(500)] + [b"", b"\x00", b"\xff" * 7, "lead-é".encode()]
    assert [murmur2(k) for k in keys] == [kafka_murmur2(k) for k in keys]


def test_murmur2_matches_the_java_clients_known_values():
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed ints there)
    known = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    assert {k: murmur2(k) - (1 << 32) if murmur2(k) >= 1 << 31 else murmur2(k) for k in known} == known


@pytest.mark.parametrize("partitions", [1, 3, 6, 7, 12])
def test_each_key_goes_where_the_default_partitioner_puts_it(partitions):
    ours, theirs, every = KeyPartitioner(remembered=50), DefaultPartitioner(), list(range(partitions))
    keys = [f"lead-{uuid.uuid4()}".encode() for _ in range(200)]
    for key in keys + keys[::-1]:  # the second time from its memory, past its bound (50 keys)
        assert ours(key, every, every) == theirs(key, every, every)


def test_a_record_without_a_key_goes_to_an_available_partition():
    ours = KeyPartitioner()
    assert {ours(None, [0, 1, 2, 3], [1, 3]) for _ in range(50)} <= {1, 3}
    assert ours(None, [0, 1], []) in (0, 1)  # none available: any of them


@pytest.mark.integration
async def test_a_leads_events_land_on_the_partition_the_default_rule_names(kafka_bootstrap, producer, unique_name):
    topic = Topic(f"{unique_name}-partitions", ("lead-activity-recorded",), partitions=6)
    await ensure_topics(kafka_bootstrap, [topic])
    activity = next(d for d in samples("x") if isinstance(d, LeadActivityRecorded))
    for _ in range(30):
        lead_id = f"lead-{uuid.uuid4()}"
        event = Envelope.of(activity.model_copy(update={"lead_id": lead_id}), source="test", lead_id=lead_id)
        metadata = await producer.send(event, topic=topic.name)
        assert metadata.partition == DefaultPartitioner()(lead_id.encode(), list(range(6)), list(range(6)))
