"""Idempotent topic creation at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from .topics import ALL_TOPICS, Topic


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic] = ALL_TOPICS,
    *,
    with_dlq: bool = True,
    replication_factor: int = 1,
    attempts: int = 30,
) -> None:
    """Create every topic (and its ``.dlq``) that does not exist yet; existing ones are left alone."""
    wanted: dict[str, NewTopic] = {}
    for topic in topics:
        wanted[topic.name] = NewTopic(topic.name, topic.partitions, replication_factor, topic_configs=topic.config)
        if with_dlq:
            # kept until handled (replayed or discarded with `leadbridge-dlq`), not for the broker's default 7 days
            wanted[topic.dlq] = NewTopic(topic.dlq, 1, replication_factor, topic_configs={"retention.ms": "-1"})
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
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
