"""Batch consumption: what the runner does with a fetch's records in ONE database transaction.

A fetch (``getmany``) returns records of several partitions; ``chunks`` cuts it into batches of at most
``batch_size`` records in all, each partition's records in offset order (its list is only ever split, never
reordered, and a lead's events are all on one partition). For each batch:

1. one multi-row claim of the event ids (``idempotency.claim_events``): the ones claimed already (redeliveries)
   and repeats inside the batch change nothing;
2. each run of consecutive fresh events whose types share a batch handler (``on(X, h, batch=...)``) goes to
   that batch handler (multi-row statements where it can, per-lead order kept); any other event to its
   type's one-event handler, in order, in the same transaction;
3. every emitted event in one multi-row outbox insert (``outbox.stage_events``, one NOTIFY), then one commit.

Any error rolls all of it back; the runner then retries the batch (a transient fault: every partition of
the batch is paused from its first record in it) or handles the batch's records one by one (anything else),
so a poison record is dead-lettered alone. The offsets of every partition a fetch advanced are committed
once, after its last batch (``RunnerStats`` counts fetches, batch transactions and offset commits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from .registry import BatchHandler
from .transaction import BatchContext

__all__ = ["BatchContext", "BatchHandler", "Chunk", "RunnerStats", "chunks", "topics_of"]

Chunk = list[tuple[TopicPartition, list[ConsumerRecord]]]
"""One batch: consecutive records of one or more partitions, per partition in offset order."""


@dataclass
class RunnerStats:
    """What a consumer runner did so far: non-empty fetches, batch transactions committed (and the most records
    one held), offset commits."""

    fetches: int = 0
    transactions: int = 0
    largest: int = 0
    commits: int = 0


def chunks(fetched: Mapping[TopicPartition, list[ConsumerRecord]], size: int) -> Iterator[Chunk]:
    """The fetch's records in batches of at most ``size``, partition after partition, each in offset order."""
    chunk: Chunk = []
    room = size
    for tp, records in fetched.items():
        start = 0
        while start < len(records):
            part = records[start:start + room]
            chunk.append((tp, part))
            start += len(part)
            room -= len(part)
            if not room:
                yield chunk
                chunk, room = [], size
    if chunk:
        yield chunk


def topics_of(chunk: Chunk) -> dict[str, int]:
    """The number of records per topic of ``chunk`` (the runner's metrics are per topic)."""
    counts: dict[str, int] = {}
    for tp, part in chunk:
        counts[tp.topic] = counts.get(tp.topic, 0) + len(part)
    return counts
