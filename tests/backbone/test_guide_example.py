"""The guide's example consumer (docs/examples/breach_notifier.py, shown whole in docs/backbone.md) runs as
written: as a process it handles an sla-breached event and exits 0 on SIGTERM with its offset committed; run
in-process and cancelled, it stops as cleanly."""

from __future__ import annotations

import asyncio
import os
import runpy
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import SlaBreached, SlaKind
from leadbridge_devstack.ports import free_port
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from .test_runtime_shutdown import committed_offsets

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "breach_notifier.py"
GUIDE = Path(__file__).parents[2] / "docs" / "backbone.md"


def breach() -> Envelope[SlaBreached]:
    lead, now = f"lead-{uuid.uuid4()}", datetime.now(UTC)
    return Envelope.of(SlaBreached(lead_id=lead, deadline_id=str(uuid.uuid4()), policy="inbound",
                                   kind=SlaKind.FIRST_TOUCH, team="emea", due_at=now, fired_at=now),
                       source="test", lead_id=lead)


async def notices(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            example = runpy.run_path(str(EXAMPLE))
            return (await conn.execute(select(func.count()).select_from(example["notices"]))).scalar_one()
    except Exception:  # noqa: BLE001 -- the schema is not there yet
        return 0
    finally:
        await engine.dispose()


async def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.2)


def test_the_guide_shows_the_example_whole():
    assert EXAMPLE.read_text().strip() in GUIDE.read_text(), "docs/backbone.md shows breach_notifier.py as it is"


async def test_as_a_process_it_handles_the_event_and_stops_on_sigterm(
        kafka_bootstrap, fresh_database_url, producer, unique_name):
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": fresh_database_url,
           "BREACH_NOTIFIER_PORT": str(port), "BREACH_NOTIFIER_GROUP_ID": unique_name}
    process = subprocess.Popen([sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        async def ready() -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready)
        await producer.send(breach())
        await until(lambda: _ge(notices(fresh_database_url), 1))
        await until(lambda: _ge(committed_offsets(kafka_bootstrap, unique_name, "sla-breached"), 1))
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    errors = process.stderr.read().decode() if process.stderr else ""
    assert code == 0, errors[-2000:]
    assert took < 10, f"stopped in {took:.1f} s"
    assert "did not stop" not in errors and "commit failed" not in errors
    assert await notices(fresh_database_url) == 1


async def test_in_process_a_cancelled_task_stops_cleanly(kafka_bootstrap, fresh_database_url, producer, unique_name):
    example = runpy.run_path(str(EXAMPLE))
    settings = example["NotifierSettings"](kafka_bootstrap_servers=kafka_bootstrap,
                                           database_url=fresh_database_url, group_id=unique_name)
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(example["SERVICE"].run(settings))
    await producer.send(breach())
    await until(lambda: _ge(notices(fresh_database_url), 1))
    await until(lambda: _ge(committed_offsets(kafka_bootstrap, unique_name, "sla-breached"), 1))
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert time.monotonic() - began < 8
    assert signal.getsignal(signal.SIGTERM) == before


async def _ge(coro, n: int) -> bool:
    return (await coro) >= n
