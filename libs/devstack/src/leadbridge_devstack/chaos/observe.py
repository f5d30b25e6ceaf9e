"""What the chaos run reads after the faults: the topics from the start, the consumer groups' offsets, the
services' idempotency records and outboxes, and each accepted lead as intake, router and insights show it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from ..progress import Log


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: str
    ts: float  # epoch seconds (the producer's timestamp)
    headers: dict[str, str]
    value: Any  # the JSON data, or None when it is not JSON

    @property
    def event_id(self) -> str | None:
        return self.headers.get("ce_id")

    @property
    def event_type(self) -> str | None:
        ce_type = self.headers.get("ce_type")
        return ce_type.removeprefix("io.leadbridge.") if ce_type else None


def _rec(r: ConsumerRecord) -> Rec:
    headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
    try:
        value = json.loads(r.value) if r.value is not None else None
    except ValueError:
        value = None
    return Rec(r.topic, r.partition, r.offset, (r.key or b"").decode(errors="replace"), r.timestamp / 1000,
               headers, value)


async def read_topics(bootstrap: str, topics: list[str]) -> dict[str, list[Rec]]:
    """Every record of ``topics`` from the beginning up to their current end (no consumer group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in topics if t in existing])
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, list[Rec]] = {t: [] for t in topics}
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                out[tp.topic].extend(_rec(r) for r in records)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        await consumer.stop()


async def group_lags(bootstrap: str) -> dict[str, int]:
    """Per consumer group: records on its topics past its committed offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lags: dict[str, int] = {}
        for group, *_ in await admin.list_consumer_groups():
            committed = await admin.list_consumer_group_offsets(group)
            if not committed:
                continue
            ends = await consumer.end_offsets(list(committed))
            lags[group] = sum(max(ends[tp] - max(meta.offset, 0), 0) for tp, meta in committed.items())
        return lags
    finally:
        await consumer.stop()
        await admin.close()


async def committed_offsets(bootstrap: str) -> dict[str, dict[TopicPartition, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {group: {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
                for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def _tables(conn: asyncpg.Connection, name: str) -> list[str]:
    rows = await conn.fetch("SELECT table_schema FROM information_schema.tables WHERE table_name = $1", name)
    return [r["table_schema"] for r in rows]


async def unsent_outbox(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        return {schema: await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL')
                for schema in await _tables(conn, "outbox")}
    finally:
        await conn.close()


async def processed_events(database_url: str) -> dict[str, dict[str, float]]:
    """Per consumer group: event id -> when it was processed (epoch seconds)."""
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        out: dict[str, dict[str, float]] = {}
        for schema in await _tables(conn, "processed_events"):
            for r in await conn.fetch(f'SELECT consumer, event_id, processed_at FROM "{schema}".processed_events'):
                out.setdefault(r["consumer"], {})[r["event_id"]] = r["processed_at"].timestamp()
        return out
    finally:
        await conn.close()


async def wait_for_quiet(bootstrap: str, database_url: str, *, stall: float, settle: float = 3.0,
                         log: Log = print) -> tuple[bool, float]:
    """Wait until no group lags, no outbox row is unsent, and the topics stop growing for ``settle`` seconds.
    A slow machine only takes longer: it gives up when nothing moved for ``stall`` seconds while work was
    left. Returns (quiet, seconds waited)."""
    started = time.monotonic()
    last, since, said = None, time.monotonic(), time.monotonic()
    lags: dict[str, int] = {}
    unsent: dict[str, int] = {}
    while True:
        try:
            lags, unsent = await group_lags(bootstrap), await unsent_outbox(database_url)
        except Exception as exc:  # noqa: BLE001 - a part still recovering: look again
            log(f"quiet: not yet ({type(exc).__name__})")
            await asyncio.sleep(1.0)
            continue
        state = (tuple(sorted(lags.items())), tuple(sorted(unsent.items())))
        busy = sum(lags.values()) + sum(unsent.values())
        now = time.monotonic()
        if state != last:
            last, since = state, now
        elif busy == 0 and now - since >= settle:
            return True, now - started
        elif busy and now - since >= stall:
            log(f"quiet: nothing moved for {stall:.0f} s: lag {lags}, unsent outbox rows {unsent}")
            return False, now - started
        if busy and now - said >= 15:
            said = now
            log(f"quiet: still working: lag {lags}, unsent outbox rows {unsent}")
        await asyncio.sleep(0.5)


@dataclass
class LeadViews:
    intake: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: 404
    router: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    insights: dict[str, list[str] | None] = field(default_factory=dict)  # the timeline's event types
    errors: list[str] = field(default_factory=list)


async def lead_views(urls: dict[str, str], api_key: str, lead_ids: list[str], token: str,
                     concurrency: int = 32) -> LeadViews:
    """Each lead as intake (GET /v1/leads/{id}), router (GET /leads/{id}) and insights (its timeline) show it."""
    views = LeadViews()
    gate = asyncio.Semaphore(concurrency)

    async def get(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        async with gate:
            for _attempt in range(5):
                try:
                    resp = await client.get(url, headers=headers)
                except httpx.TransportError:
                    await asyncio.sleep(0.5)
                    continue
                if resp.status_code == 404:
                    return None
                if resp.status_code == 200:
                    body: dict[str, Any] = resp.json()
                    return body
                await asyncio.sleep(0.5)
            views.errors.append(f"GET {url}: no answer")
            return None

    async def one(client: httpx.AsyncClient, lead_id: str) -> None:
        views.intake[lead_id] = await get(client, f"{urls['intake']}/v1/leads/{lead_id}", {"X-API-Key": api_key})
        bearer = {"Authorization": f"Bearer {token}"}
        views.router[lead_id] = await get(client, f"{urls['router']}/leads/{lead_id}", bearer)
        timeline = await get(client, f"{urls['insights']}/v1/leads/{lead_id}/timeline", bearer)
        views.insights[lead_id] = None if timeline is None else [e.get("type") for e in timeline.get("events", [])]

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(one(client, lid) for lid in lead_ids))
    return views
