"""`make chaos --brokers 3`: the broker fault picks the broker that leads the most input partitions, on a
cluster whose topics have three replicas each (what the services create on three brokers)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from leadbridge_contracts.topics import ALL_TOPICS
from leadbridge_devstack.chaos.faults import busiest_broker
from leadbridge_events.admin import ensure_topics

pytestmark = pytest.mark.integration


async def test_the_broker_fault_picks_the_busiest_broker_of_the_cluster(kafka_cluster):
    await ensure_topics(kafka_cluster.bootstrap_servers)  # as every service does at start, fitted to the cluster
    stack = SimpleNamespace(brokers=SimpleNamespace(bootstrap_servers=kafka_cluster.bootstrap_servers))

    index, led, replicas = await busiest_broker(stack)

    assert index in range(3)
    assert led >= sum(t.partitions for t in ALL_TOPICS) / 3, "it leads at least its share of the input partitions"
    assert replicas == 3, "every input partition has a replica on each broker: one may die"
