"""PostgreSQL advisory locks in LeadBridge's own namespace: the two-key form, one lock class per use.

``pg_advisory_*lock(int, int)``: the first key is the lock *class* (what the lock is for), the second names the
object within it (a schema, a person). Different uses can never collide -- a hash of an intake person can
not land on a relay's leadership lock -- and the two-key form shares no key space with the one-key
``pg_advisory_lock(bigint)`` other software may use. Class numbers start at ``0x4C420000`` ("LB"); add new
uses at the end, never renumber. Object keys are CRC-32 of the name (deterministic across processes and
server versions), as a signed 32-bit integer.

Every wait is bounded by the pool's ``lock_timeout`` (``db.make_engine``): a lock that cannot be had within
it raises SQLSTATE 55P03, a transient error (``failures.py``) that is retried, never a hang.
"""

from __future__ import annotations

import enum
import functools
import zlib

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_BASE = 0x4C42_0000


class LockClass(enum.IntEnum):
    SCHEMA_MIGRATION = _BASE + 1  # one migrating replica per service schema (transaction-scoped)
    RELAY_LEADERSHIP = _BASE + 2  # one active outbox relay per schema (session-scoped, held for hours)
    ROUTER_SEED = _BASE + 3  # the router's roster seeding at start (transaction-scoped)
    INTAKE_PERSON = _BASE + 4  # one capture at a time per email / phone (transaction-scoped)


def object_key(name: str) -> int:
    """The second key for ``name``: its CRC-32 as a signed 32-bit integer."""
    crc = zlib.crc32(name.encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


@functools.cache
def _xact_lock_statement(count: int) -> TextClause:
    # one statement; the select list is evaluated left to right, so locks are taken in the order given
    return text("SELECT " + ", ".join(f"pg_advisory_xact_lock(:c, :k{i})" for i in range(count)))


def xact_lock_params(lock: LockClass, names: list[str]) -> tuple[TextClause, dict[str, int]]:
    """The statement and parameters that take ``lock`` on every name (sorted: no deadlocks) until commit."""
    ordered = sorted(set(names))
    params = {"c": int(lock), **{f"k{i}": object_key(n) for i, n in enumerate(ordered)}}
    return _xact_lock_statement(len(ordered)), params


async def xact_lock(conn: AsyncConnection | AsyncSession, lock: LockClass, *names: str) -> None:
    """Take ``lock`` on ``names`` until the transaction of ``conn`` (a connection or session) ends."""
    if names:
        statement, params = xact_lock_params(lock, list(names))
        await conn.execute(statement, params)


async def try_session_lock(conn: AsyncConnection | AsyncSession, lock: LockClass, name: str) -> bool:
    """Try to take ``lock`` on ``name`` for the life of the session, without waiting."""
    result = await conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": int(lock), "k": object_key(name)})
    return bool(result.scalar())
