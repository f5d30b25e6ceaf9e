"""Prometheus metrics of the backbone (consumer runner and outbox relay). No per-lead labels."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once: the consumer runner counts per batch and per record, and a
    ``labels()`` call costs more than the increment. (Label values are bounded: groups, topics, event types.)"""
    try:
        found: M = _children[metric, labels]
    except KeyError:
        found = _children[metric, labels] = metric.labels(*labels)
    return found


def observe_many(histogram: Histogram, amount: float, n: int) -> None:
    """``n`` observations of ``amount`` (each event of a batch took the batch's time / its size) at the cost of
    one: the count of its bucket and the sum, as ``observe`` would leave them ``n`` times over."""
    buckets, bounds, total = (getattr(histogram, a, None) for a in ("_buckets", "_upper_bounds", "_sum"))
    if buckets is None or bounds is None or total is None or n < 1:  # not the client we know: the plain way
        for _ in range(n):
            histogram.observe(amount)
        return
    total.inc(amount * n)
    buckets[bisect_left(bounds, amount)].inc(n)

EVENTS_CONSUMED = Counter(
    "leadbridge_events_consumed_total", "Events handled successfully (including duplicates skipped)",
    ["group", "topic"],
)
EVENTS_DUPLICATE = Counter(
    "leadbridge_events_duplicate_total", "Redelivered events skipped by the idempotent consumer", ["group", "topic"]
)
EVENTS_IGNORED = Counter(
    "leadbridge_events_ignored_total", "Events of a type the consumer has no handler for, skipped",
    ["group", "topic", "type"],
)
EVENTS_FAILED = Counter(
    "leadbridge_events_failed_total", "Handler attempts that raised (each retry counts)", ["group", "topic"]
)
EVENTS_DEAD_LETTERED = Counter(
    "leadbridge_events_dead_lettered_total", "Records sent to the dead-letter topic", ["group", "topic", "reason"]
)
HANDLER_SECONDS = Histogram(
    "leadbridge_handler_seconds", "Handler latency including its database transaction", ["group", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_EVENTS = Histogram(
    "leadbridge_consumer_batch_events", "Events per consumer transaction (one batch of a fetch)", ["group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "leadbridge_consumer_lag", "Records behind the partition's high watermark", ["group", "topic", "partition"]
)
CONSUMER_PAUSED = Gauge(
    "leadbridge_consumer_paused_partitions", "Partitions paused while a dependency (the database) is down", ["group"]
)
OUTBOX_PUBLISHED = Counter("leadbridge_outbox_published_total", "Outbox rows relayed to Kafka", ["schema"])
OUTBOX_BACKLOG = Gauge("leadbridge_outbox_backlog", "Outbox rows not yet relayed", ["schema"])
OUTBOX_OLDEST_AGE = Gauge(
    "leadbridge_outbox_oldest_unsent_age_seconds", "Age of the oldest outbox row not yet relayed", ["schema"]
)
OUTBOX_PARKED = Gauge(
    "leadbridge_outbox_parked_rows", "Outbox rows parked after failing for their own sake (see the DLQ runbook)",
    ["schema"],
)
OUTBOX_PARKED_TOTAL = Counter("leadbridge_outbox_parked_total", "Outbox rows parked", ["schema"])
OUTBOX_PUBLISH_ERRORS = Counter(
    "leadbridge_outbox_publish_errors_total", "Relay batches that failed to publish (will be retried)", ["schema"]
)
