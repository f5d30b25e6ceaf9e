"""Helpers for tests of services and extensions: read what landed on a topic from a real broker."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import Envelope

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .auth import AuthSettings


async def collect_records(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    until: Callable[[list[ConsumerRecord]], bool],
    match: Callable[[ConsumerRecord], bool] = lambda r: True,
    timeout: float = 30.0,
) -> list[ConsumerRecord]:
    """Read ``topics`` from the beginning with a throwaway group until ``until(matched)`` or timeout."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap_servers, group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    matched: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(matched):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {len(matched)} matching records after {timeout}s")
            batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                matched.extend(r for r in records if match(r))
        return matched
    finally:
        await consumer.stop()


async def collect_events(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    lead_ids: Iterable[str],
    count: int,
    timeout: float = 30.0,
    event_type: str | None = None,
) -> list[Envelope[Any]]:
    """Decoded events of the given leads (in topic order) until ``count`` arrived."""
    wanted = {lid.encode() for lid in lead_ids}

    def match(r: ConsumerRecord) -> bool:
        if r.key not in wanted:
            return False
        return event_type is None or dict(r.headers).get("ce_type") == f"io.leadbridge.{event_type}".encode()

    records = await collect_records(bootstrap_servers, topics, match=match, until=lambda m: len(m) >= count,
                                    timeout=timeout)
    return [Envelope.from_kafka(r.key, r.value, r.headers) for r in records]


@contextlib.contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the block, every finished span kept in memory (``exporter.get_finished_spans()``).

    Create the apps inside the block: an app is instrumented when it is built, if tracing is on then."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from . import tracing

    exporter = InMemorySpanExporter()
    tracing.configure_tracing("test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


# -- tokens for tests ------------------------------------------------------------------------------

TEST_DEV_SECRET = "leadbridge-test-dev-secret-not-for-production"


def test_auth_settings() -> AuthSettings:
    """Development-mode auth with the test suite's shared secret (the root conftest exports it as AUTH_DEV_SECRET)."""
    from pydantic import SecretStr

    from .auth import AuthSettings

    return AuthSettings(dev_secret=SecretStr(TEST_DEV_SECRET))


def test_token(scopes: Iterable[str] | None = None, subject: str = "test-user") -> str:
    """A valid development token with ``scopes`` (default: every scope)."""
    from .auth import SCOPES, mint_dev_token

    return mint_dev_token(test_auth_settings(), tuple(SCOPES) if scopes is None else scopes, subject=subject)


def auth_headers(scopes: Iterable[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {test_token(scopes)}"}


test_auth_settings.__test__ = test_token.__test__ = False  # type: ignore[attr-defined]  # not pytest tests


async def lose_connection(session: Any, database_url: str) -> int:
    """The server ends ``session``'s connection (``pg_terminate_backend``), as a restart would: what the
    session's transaction did is gone and its next statement fails. Returns the backend's pid."""
    import asyncpg
    from sqlalchemy import text

    pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    return pid
