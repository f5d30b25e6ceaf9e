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


# tables whose rows are updated in place after their insert, and so keep room in each page for the new version
UPDATED_IN_PLACE = {"intake": "leads", "sla-watcher": "leads", "insights": "lead_facts"}


@pytest.mark.parametrize("service", UPDATED_IN_PLACE)
async def test_tables_updated_in_place_keep_room_for_the_next_version(service, fresh_database_url):
    """Built by the migrations and by the models alike (tests build schemas from the models)."""
    from leadbridge_events.db import ROOM_FOR_UPDATES

    metadata, versions = load(service)
    table = metadata.tables[f"{metadata.schema}.{UPDATED_IN_PLACE[service]}"]
    assert table.dialect_options["postgresql"]["with"] == ROOM_FOR_UPDATES
    engine = make_engine(fresh_database_url)
    try:
        await migrate(engine, metadata, versions)
        async with engine.connect() as conn:
            options = (await conn.execute(text("SELECT reloptions FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                                          {"t": table.fullname})).scalar()
        assert options == [f"{k}={v}" for k, v in ROOM_FOR_UPDATES.items()]
    finally:
        await engine.dispose()


async def test_a_leads_status_update_is_a_hot_update(fresh_database_url):
    """Intake's status updates (scored, then routed: two per lead) change no indexed column: with room in the
    page they add no entry to the three indexes of ``intake.leads``. With packed pages none of 300 was HOT."""
    import json

    from leadbridge_intake.handlers import _SET_STATUS

    metadata, versions = load("intake")
    engine = make_engine(fresh_database_url)
    ids = [f"lead-{i:04d}" for i in range(300)]
    profile = json.dumps({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines Ltd",
                          "title": "Head of Computing", "country": "GB", "notes": "x" * 400})
    try:
        await migrate(engine, metadata, versions)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO intake.leads (id, created_at, last_activity_at, email, phone, is_test, status, "
                "activity_count, profile, status_detail) SELECT id, now(), now(), id || '@example.com', NULL, "
                "false, 'captured', 0, CAST(:profile AS jsonb), '{}' FROM unnest(CAST(:ids AS text[])) AS id"),
                {"ids": ids, "profile": profile})
        counts = text("SELECT pg_stat_get_xact_tuples_updated(CAST('intake.leads' AS regclass)), "
                      "pg_stat_get_xact_tuples_hot_updated(CAST('intake.leads' AS regclass))")
        for status in ("mql", "routed"):
            async with engine.begin() as conn:
                before = (await conn.execute(counts)).one()
                detail = json.dumps({"stage": status, "score": 72, "assignee_id": "rep-7", "team": "smb"})
                await conn.execute(_SET_STATUS, {"id": ids, "status": [status] * len(ids),
                                                 "detail": [detail] * len(ids), "reroute": [True] * len(ids)})
                after = (await conn.execute(counts)).one()
            updated, hot = after[0] - before[0], after[1] - before[1]
            assert updated == len(ids)
            assert hot >= 0.75 * updated, f"{status}: {hot} of {updated} updates HOT"  # packed pages: none
    finally:
        await engine.dispose()
