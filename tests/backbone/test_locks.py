"""Advisory locks in their own namespace, and bounded waits on every pooled connection."""

from __future__ import annotations

import pytest
from leadbridge_events.db import make_engine
from leadbridge_events.failures import is_transient, sqlstate
from leadbridge_events.locks import LockClass, object_key, xact_lock
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


def test_lock_classes_are_distinct_32_bit_keys():
    values = [int(c) for c in LockClass]
    assert len(set(values)) == len(values)
    assert all(-(2**31) <= v < 2**31 for v in values)
    for name in ("public", "intake", "ada@example.com", "+4915112345678", ""):
        assert -(2**31) <= object_key(name) < 2**31
    assert object_key("intake") == object_key("intake") != object_key("scoring")


@pytest.mark.integration
async def test_a_lock_wait_is_bounded_and_transient_and_classes_never_collide(fresh_database_url):
    engine = make_engine(fresh_database_url, lock_timeout_ms=300)
    try:
        async with engine.connect() as holder, engine.connect() as waiter:
            assert (await waiter.execute(text("SHOW statement_timeout"))).scalar() == "30s"
            await xact_lock(holder, LockClass.INTAKE_PERSON, "ada@example.com")
            # the same name in another class is another lock: no wait
            await xact_lock(waiter, LockClass.RELAY_LEADERSHIP, "ada@example.com")
            with pytest.raises(DBAPIError) as caught:
                await xact_lock(waiter, LockClass.INTAKE_PERSON, "ada@example.com")
            assert sqlstate(caught.value) == "55P03" and is_transient(caught.value)
            assert "ada@example.com" not in str(caught.value), "parameters are hidden in database errors"
    finally:
        await engine.dispose()
