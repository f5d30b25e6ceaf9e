"""A safe Kafka producer: idempotent, acks=all, every send awaited, bounded in-flight sends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import RecordMetadata
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.topics import topic_for

from .partitioner import KeyPartitioner


class EventProducer:
    """Publishes envelopes (or raw records) and returns only once the broker has acknowledged them."""

    def __init__(self, bootstrap_servers: str, *, max_in_flight: int = 1000, client_id: str = "leadbridge",
                 request_timeout_ms: int = 30000, **kafka_options: Any) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            # 0: a lone record goes out at once; records sent while a request is in flight (one per broker)
            # are batched anyway, so lingering only adds latency at low load
            linger_ms=kafka_options.pop("linger_ms", 0),
            # a relay batch of 500 events fits in a few requests per partition, not one per 16 KiB
            max_batch_size=kafka_options.pop("max_batch_size", 256 * 1024),
            request_timeout_ms=request_timeout_ms,
            partitioner=kafka_options.pop("partitioner", KeyPartitioner()),  # Kafka's rule, faster (``partitioner``)
            **kafka_options,
        )
        self._slots = asyncio.Semaphore(max_in_flight)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def topics(self) -> set[str]:
        """The topics the cluster has now (a fresh metadata request); KafkaConnectionError while it is away."""
        try:
            return set((await self._producer.client.fetch_all_metadata()).topics())
        except KafkaError as exc:
            raise KafkaConnectionError(f"cluster metadata unavailable: {exc}") from exc

    async def send_raw(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                       headers: Sequence[tuple[str, bytes]] = ()) -> RecordMetadata:
        async with self._slots:
            future = await self._producer.send(topic, value=value, key=key, headers=list(headers))
            return await future

    async def send(self, event: Envelope[Any], topic: str | None = None) -> RecordMetadata:
        return await self.send_raw(
            topic or topic_for(event.type).name,
            event.kafka_value(),
            key=event.kafka_key(),
            headers=event.kafka_headers(),
        )

    async def send_many_raw(self, records: Iterable[tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]]
                            ) -> list[RecordMetadata]:
        """Send (topic, key, value, headers) records in order, pipelined, and await all of them.

        Order per partition is kept by the idempotent producer; the call fails if any send fails.
        """
        return await acknowledged(await self.enqueue_many_raw(records))

    async def enqueue_many_raw(self, records: Iterable[tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]]
                               ) -> list[asyncio.Future[RecordMetadata]]:
        """Hand (topic, key, value, headers) records to the producer in order, without awaiting the broker.

        Returns one future per record (``acknowledged`` awaits them). Records enqueued by later calls go out
        after these on each partition (the idempotent producer keeps the order). Raises at once for a record
        the producer refuses (e.g. larger than ``max_request_size``); the records before it are on their way.
        """
        futures: list[asyncio.Future[RecordMetadata]] = []
        for topic, key, value, headers in records:
            await self._slots.acquire()
            try:
                fut = await self._producer.send(topic, value=value, key=key, headers=list(headers))
            except BaseException:
                self._slots.release()
                raise
            fut.add_done_callback(lambda _f: self._slots.release())
            futures.append(fut)
        return futures


async def acknowledged(futures: Sequence[asyncio.Future[RecordMetadata]]) -> list[RecordMetadata]:
    """Await every record's acknowledgement (all of them, even when one fails); raise the first failure."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)
