"""The per-process roster cache never serves a stale roster: every write bumps the version (trigger)."""

from __future__ import annotations

import pytest
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_router import db, store
from leadbridge_router.roster import Rep, Team
from sqlalchemy import text

pytestmark = pytest.mark.integration


async def test_roster_cache_follows_commits_and_ignores_rollbacks(fresh_database_url):
    engine = make_engine(fresh_database_url)
    sessions = session_factory(engine)
    try:
        await migrate(engine, db.metadata, migrations_dir("leadbridge_router"))
        async with sessions() as s, s.begin():
            await store.upsert_team(s, Team.model_validate({"id": "t1", "name": "T1"}))
            await store.upsert_rep(s, Rep(id="r1", team="t1"))
        async with sessions() as s, s.begin():
            first = await store.load_roster(s)
            assert [r.id for r in first.reps] == ["r1"]
            assert await store.load_roster(s) is first  # cached: same version
        async with sessions() as s:  # a change that rolls back leaves the cached roster valid
            async with s.begin():
                await store.upsert_rep(s, Rep(id="r2", team="t1"))
                assert [r.id for r in (await store.load_roster(s)).reps] == ["r1", "r2"]  # own write seen
                await s.rollback()
        async with sessions() as s, s.begin():
            assert [r.id for r in (await store.load_roster(s)).reps] == ["r1"]
        async with sessions() as s, s.begin():  # any writer, even plain SQL, moves the version
            await s.execute(text("UPDATE router.reps SET spec = jsonb_set(spec, '{active}', 'false')"))
        async with sessions() as s, s.begin():
            assert [r.active for r in (await store.load_roster(s)).reps] == [False]
    finally:
        await engine.dispose()
