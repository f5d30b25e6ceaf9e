"""Idempotent topic creation at start-up, replicated to fit the cluster.

Unless told otherwise (``KAFKA_REPLICATION_FACTOR`` / ``KAFKA_MIN_INSYNC_REPLICAS``), a topic gets a replication
factor of min(3, brokers) and ``min.insync.replicas`` of 2 when that factor is 3 (else 1): on three brokers an
``acks=all`` write survives the loss of any one of them, on one broker (the laptop stack) nothing changes. The
brokers are counted from the cluster's metadata when the topics are created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from leadbridge_contracts.topics import ALL_TOPICS, Topic


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic] = ALL_TOPICS,
    *,
    with_dlq: bool = True,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    attempts: int = 30,
) -> None:
    """Create every topic (and its ``.dlq``) that does not exist yet; existing ones are left alone.

    ``replication_factor`` / ``min_insync_replicas`` None: fitted to the number of brokers (see the module).
    """
    topics = list(topics)
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            if all(t.name in existing and (not with_dlq or t.dlq in existing) for t in topics):
                return
            brokers = len((await admin.describe_cluster())["brokers"])
            factor, min_isr = replication_for(brokers, replication_factor, min_insync_replicas)
            wanted = new_topics(topics, factor, min_isr, with_dlq=with_dlq)
            missing = [t for name, t in wanted.items() if name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass  # a concurrent starter created it first
            return
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        finally:
            await admin.close()


def replication_for(brokers: int, factor: int | None = None, min_isr: int | None = None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas): the ones given, else fitted to ``brokers``."""
    factor = factor or max(1, min(brokers, 3))
    return factor, min_isr or (2 if factor >= 3 else 1)


def new_topics(topics: Iterable[Topic], factor: int, min_isr: int, *, with_dlq: bool = True) -> dict[str, NewTopic]:
    wanted: dict[str, NewTopic] = {}
    replication = {"min.insync.replicas": str(min_isr)}
    for topic in topics:
        wanted[topic.name] = NewTopic(topic.name, topic.partitions, factor, topic_configs={**replication,
                                                                                            **topic.config})
        if with_dlq:
            # kept until handled (replayed or discarded with `leadbridge-dlq`), not for the broker's default 7 days
            wanted[topic.dlq] = NewTopic(topic.dlq, 1, factor, topic_configs={**replication, "retention.ms": "-1"})
    return wanted
