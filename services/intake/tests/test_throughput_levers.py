"""The per-request shortcuts keep their guarantees: the API key cache, the dead-connection retry, workers'
rate-limit shares, and one statement for the row, its outbox event and the NOTIFY."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from leadbridge_intake.app import create_app
from leadbridge_intake.keys import ApiKey, KeyCache, find_key_cached
from leadbridge_intake.tables import leads, outbox
from leadbridge_intake.testing import ADMIN, make_settings, new_key, running
from sqlalchemy import func, select


def test_key_cache_expires_and_forgets():
    cache = KeyCache(5)
    key = ApiKey("lb_1", "web", frozenset({"leads:write"}), None)
    cache.put("h", key, now=100.0)
    assert cache.get("h", 104.9) == key
    assert cache.get("h", 105.0) is None  # expired: looked up again
    cache.put("h", key, now=200.0)
    cache.forget("lb_1")
    assert cache.get("h", 200.1) is None
    off = KeyCache(0)
    off.put("h", key, now=1.0)
    assert off.get("h", 1.0) is None


async def test_concurrent_misses_of_one_key_share_one_lookup():
    """When a busy key's entry expires, every request in flight misses at once: one look-up answers them all
    (before, each opened a session of its own, past the pool's size, every ``api_key_cache_seconds``)."""
    lookups = 0
    row = type("Row", (), {"id": "lb_1", "source": "web", "scopes": "leads:write", "revoked_at": None})()

    class Session:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def execute(self, _statement):
            nonlocal lookups
            lookups += 1
            await asyncio.sleep(0.01)
            return type("Result", (), {"first": lambda self: row})()

    cache = KeyCache(5)
    keys = await asyncio.gather(*(find_key_cached(Session, cache, "lb_secret", 1.0) for _ in range(32)))
    assert lookups == 1 and {k.id for k in keys} == {"lb_1"} and not cache.pending
    await find_key_cached(Session, cache, "lb_secret", 6.0)  # expired: looked up again
    assert lookups == 2


def test_workers_share_the_rate_limit():
    settings = make_settings("postgresql+asyncpg://x@127.0.0.1/x", "127.0.0.1:1", workers=4,
                             rate_limit_per_minute=600, rate_limit_burst=60)
    limiter = create_app(settings).state.ctx.limiter
    assert limiter.burst == 15 and limiter.rate == pytest.approx(600 / 4 / 60)


@pytest.mark.integration
async def test_revocation_applies_at_once_through_the_cache(intake):
    client, _app, key = intake
    h = {"X-API-Key": key}
    assert (await client.post("/v1/leads", headers=h, json={"email": f"c{uuid.uuid4().hex[:8]}@example.com"})
            ).status_code == 202  # the key is cached now
    r = await client.delete(f"/v1/admin/keys/{key[:11]}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    again = await client.post("/v1/leads", headers=h, json={"email": f"c{uuid.uuid4().hex[:8]}@example.com"})
    assert again.status_code == 403 and again.json()["error"] == "revoked_api_key"


@pytest.mark.integration
async def test_dead_pooled_connections_are_replaced_without_failing_a_lead(fresh_database_url, kafka_bootstrap):
    async with running(make_settings(fresh_database_url, kafka_bootstrap, api_key_cache_seconds=0)) as (client, app):
        key = await new_key(client)
        h = {"X-API-Key": key}
        for _ in range(2):  # the pool holds connections now
            assert (await client.post("/v1/leads", headers=h,
                                      json={"email": f"d{uuid.uuid4().hex[:8]}@example.com"})).status_code == 202
        dbname = fresh_database_url.rpartition("/")[2]
        admin = await asyncpg.connect(fresh_database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:  # what a database restart does to idle pooled connections
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
                                "AND pid <> pg_backend_pid() AND state = 'idle'", dbname)
        finally:
            await admin.close()
        emails = [f"e{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
        for email in emails:
            r = await client.post("/v1/leads", headers=h, json={"email": email})
            assert r.status_code == 202, r.text
        async with app.state.runtime.sessions() as s:
            stored = (await s.execute(select(func.count()).select_from(leads).where(leads.c.email.in_(emails))))
            assert stored.scalar() == 3
            events = await s.execute(select(func.count()).select_from(outbox).where(outbox.c.topic == "lead-captured"))
            assert events.scalar() == 5  # every lead row has its event, written in the same statement
