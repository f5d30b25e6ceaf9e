"""Every service's Alembic migrations build exactly the schema its models describe, and re-running is a no-op."""

from __future__ import annotations

import pytest
from leadbridge_events.db import make_engine
from leadbridge_events.migrations import differences, load, migrate, registered
from sqlalchemy import text

pytestmark = pytest.mark.integration


SERVICES = ("crm-sync", "insights", "intake", "router", "scoring", "sla-watcher")


def test_every_service_registers_its_migrations():
    """Through its pyproject's ``leadbridge.migrations`` entry point: libs/events names no service."""
    assert set(SERVICES) <= set(registered())


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(service, fresh_database_url):
    metadata, versions = load(service)
    assert list(versions.glob("[0-9]*.py")), f"{service} has no migrations: run `leadbridge-migrations revision`"
    engine = make_engine(fresh_database_url)
    try:
        await migrate(engine, metadata, versions)
        await migrate(engine, metadata, versions)  # replicas and restarts run it again: nothing happens
        assert await differences(engine, metadata) == [], (
            f"{service}: models and migrations disagree; run `uv run leadbridge-migrations revision {service} -m ...`"
        )
        async with engine.connect() as conn:
            version = (await conn.execute(text(f'SELECT version_num FROM "{metadata.schema}".alembic_version'))).scalar()
        assert version
    finally:
        await engine.dispose()
