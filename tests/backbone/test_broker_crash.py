"""A three-broker KRaft cluster: topics are replicated 3 ways with min.insync.replicas 2, and an acks=all,
idempotent producer loses nothing and duplicates nothing while the leader of its partitions is killed -9
and restarted."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics, replication_for
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import collect_records

pytestmark = pytest.mark.integration


def test_replication_follows_the_cluster_size():
    assert replication_for(1) == (1, 1)
    assert replication_for(2) == (2, 1)
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)
    assert replication_for(1, 3, 2) == (3, 2), "settings win over the broker count"


async def describe(bootstrap: str, name: str) -> tuple[dict, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([name])
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        configs = {entry[0]: entry[1] for resource in response.resources for entry in resource[4]}
        return topic, configs
    finally:
        await admin.close()


async def described_when_led(bootstrap: str, name: str, partitions: int) -> dict:
    """The topic's description once every partition has a leader (a new topic takes a moment)."""
    for _ in range(50):
        described, _ = await describe(bootstrap, name)
        if len(described["partitions"]) == partitions and all(p["leader"] >= 0 for p in described["partitions"]):
            return described
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} has no leaders: {described}")


async def test_topics_are_replicated_three_ways_with_two_in_sync(kafka_cluster, unique_name):
    topic = Topic(f"{unique_name}-replicated", ("lead-captured",), partitions=3)
    await ensure_topics(kafka_cluster.bootstrap_servers, [topic])
    for name, partitions in ((topic.name, 3), (topic.dlq, 1)):
        described = await described_when_led(kafka_cluster.bootstrap_servers, name, partitions)
        _, configs = await describe(kafka_cluster.bootstrap_servers, name)
        assert {len(p["replicas"]) for p in described["partitions"]} == {3}, name
        assert configs["min.insync.replicas"] == "2", name


async def test_a_broker_killed_mid_stream_loses_and_duplicates_nothing(kafka_cluster, unique_name):
    topic = Topic(f"{unique_name}-crash", ("lead-captured",), partitions=3)
    bootstrap = kafka_cluster.bootstrap_servers
    await ensure_topics(bootstrap, [topic])
    described = await described_when_led(bootstrap, topic.name, topic.partitions)
    leader = next(p["leader"] for p in described["partitions"] if p["partition"] == 0)
    victim = leader - 1  # node ids are 1-based, cluster indexes 0-based
    total, errors = 300, []
    async with EventProducer(bootstrap, request_timeout_ms=15000) as producer:
        for i in range(total):
            if i == total // 3:
                kafka_cluster.kill(victim)  # the leader of partition 0, SIGKILL
            if i == 2 * total // 3:
                await asyncio.to_thread(kafka_cluster.restart, victim)
            try:
                await producer.send_raw(topic.name, str(i).encode(), key=f"lead-{i % 7}".encode())
            except Exception as exc:  # noqa: BLE001 - what a client would see
                errors.append(repr(exc))
    assert errors == [], "acks=all sends ride out the failover"
    assert kafka_cluster.running() == [0, 1, 2]
    records = await collect_records(bootstrap, [topic.name], until=lambda m: len(m) >= total, timeout=60)
    assert sorted(int(r.value) for r in records) == list(range(total)), "every record arrived"
    assert await records_in(bootstrap, topic) == total, "no record was written twice"
    for _ in range(60):  # the restarted broker catches up and rejoins every in-sync replica set
        after, _ = await describe(bootstrap, topic.name)
        if all(len(p["isr"]) == 3 for p in after["partitions"]):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"in-sync replicas after the restart: {after['partitions']}")


async def records_in(bootstrap: str, topic: Topic) -> int:
    """How many records the topic holds (no transactions, so offsets are dense)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def test_the_cluster_api(kafka_cluster):
    assert kafka_cluster.bootstrap_servers.count(",") == 2
    assert kafka_cluster.replication_factor == 3 and kafka_cluster.min_insync_replicas == 2
