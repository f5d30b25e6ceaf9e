"""The idempotent consumer: record an event id in the same transaction as the handler's effects.

``claim_events(..., first=True)`` (the consumer runner: the claim is its transaction's first statement) sends
the transaction's BEGIN in the same round trip as the claim: SQLAlchemy's asyncpg driver otherwise sends
``BEGIN`` on its own before the first statement, a round trip per consumed batch (3-7% of each consumer's CPU
at 200 leads/s, where batches hold an event or two). The pair goes as one simple query (the only way
PostgreSQL takes two statements at once): ``BEGIN; EXECUTE <claim>(...)`` of the claim prepared once per
connection (so the server parses it once, as it does the driver's prepared statements; an unprepared insert cost
PostgreSQL ~25 us more per event), with its values inlined: only ids and group names made of plain characters
take that path (UUIDs, service names), anything else the two round trips as before. The same round trip sets
how the batch's statements are planned (``_BATCH_PLANNING``: per execution, by index). The simple query
returns no rows, only the insert's count: when it claimed every id (the usual case) they are all fresh;
otherwise (a redelivery, or the express lane took some first) the ids this transaction inserted are read back
by their ``xmin``, a primary-key probe each.
"""

from __future__ import annotations

import contextlib
import functools
import re
import weakref
import zlib
from typing import Any

import asyncpg
from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.ext.asyncio import AsyncSession

_PLAIN = re.compile(r"[A-Za-z0-9_.:@+=-]{1,200}")  # no quote, no backslash: safe as a literal, inlined


async def claim_event(session: AsyncSession, processed: Table, consumer: str, event_id: str, *,
                      first: bool = False) -> bool:
    """True if this consumer has not processed ``event_id`` yet (and now owns it in this transaction).

    A concurrent duplicate blocks on the primary key until the first transaction ends, then sees the
    conflict: so a redelivered event changes nothing, even under races.
    """
    return bool(await claim_events(session, processed, consumer, [event_id], first=first))


async def claim_events(session: AsyncSession, processed: Table, consumer: str, event_ids: list[str], *,
                       first: bool = False) -> set[str]:
    """The ids of ``event_ids`` this consumer had not processed yet (now claimed in this transaction).

    ``first``: nothing ran in the session's transaction yet, so its BEGIN may ride with the claim."""
    if not event_ids:
        return set()
    ids = list(dict.fromkeys(event_ids))
    if first:
        claimed = await _begin_with_claim(session, processed.fullname, consumer, ids)
        if claimed is not None:
            return claimed
        await session.execute(_BATCH_PLANNING)
    rows = await session.execute(_claim_statement(processed.fullname), {"consumer": consumer, "ids": ids})
    return set(rows.scalars())


# How a batch's statements are planned, for its transaction only (SET LOCAL). They read and write rows by key,
# a few hundred keys a statement: planned per execution, for the tables as they are now (a generic plan made
# while a table was small, a sequential scan, was kept as the table grew, until autovacuum's first ANALYZE);
# and by index wherever there is one: on cache-resident tables of 10,000-100,000 rows the planner still chose
# sequential scans for ``key = ANY(<300 keys>)``, underestimating the filter's cost per row (7-27 ms a statement
# in sla-watcher and insights, and growing with the table, where the index probes take well under 1 ms).
# enable_seqscan off only penalises a sequential scan: a statement with no index to use still runs one.
_BATCH_PLANNING = text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                       "set_config('enable_seqscan', 'off', true)")  # true: SET LOCAL, one statement


class ClaimNotPrepared(ConnectionError):
    """The connection lost the claim's prepared statement: transient (``failures``), the retry prepares it again."""


class _Begun:
    """The transaction a simple query's ``BEGIN`` opened, as SQLAlchemy's asyncpg adapter drives one."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def start(self) -> None:  # never called: the transaction is open already
        raise AssertionError("a transaction begun with its first statement is started already")

    async def commit(self) -> None:
        await self._driver.execute("COMMIT")

    async def rollback(self) -> None:
        await self._driver.execute("ROLLBACK")


async def _begin_with_claim(session: AsyncSession, table: str, consumer: str, ids: list[str]) -> set[str] | None:
    """``BEGIN`` and the claim in one round trip; None when this session cannot (then claim as usual)."""
    if not _PLAIN.fullmatch(consumer) or not all(_PLAIN.fullmatch(i) for i in ids):
        return None
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection  # typed as the DBAPI protocol; the adapter's own state is needed here
    driver: Any = fairy.driver_connection
    if (not isinstance(adapted, AsyncAdapt_asyncpg_connection) or driver is None or adapted._transaction is not None
            or adapted.isolation_level is not None or adapted.readonly or adapted.deferrable
            or driver.is_in_transaction()):
        return None  # not the asyncpg adapter at its defaults, or its transaction began already
    name = await _prepared(driver, table)
    # before the round trip: whatever happens to it, the session's rollback now ends the transaction
    adapted._transaction = _Begun(driver)
    literals = ",".join(f"'{i}'" for i in ids)
    try:
        status = await driver.execute(f"BEGIN; {_BATCH_PLANNING.text}; "
                                      f"EXECUTE {name}('{consumer}', ARRAY[{literals}]::text[])")
    except asyncpg.exceptions.InvalidSQLStatementNameError:  # deallocated behind our back (DISCARD ALL)
        _PREPARED.pop(driver, None)
        raise ClaimNotPrepared("the claim's prepared statement was gone (26000); prepared again on the retry") from None
    except BaseException:
        if driver.is_closed():  # as the adapter does on a lost connection: nothing to roll back
            adapted._transaction = None
            await conn.invalidate()
        raise
    if status == f"INSERT 0 {len(ids)}":
        return set(ids)
    # some were claimed already (a redelivery): the ones this transaction inserted carry its xid
    rows = await session.execute(_ours_statement(table), {"consumer": consumer, "ids": ids})
    return set(rows.scalars())


_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # connection -> its claims


async def _prepared(driver: Any, table: str) -> str:
    """The name of ``table``'s claim prepared on ``driver``'s session (prepared there once: the server plans it
    once, as the driver's own prepared statements, instead of parsing and planning an insert per batch)."""
    name = f"leadbridge_claim_{zlib.crc32(table.encode()):08x}"
    done = _PREPARED.setdefault(driver, set())
    if name not in done:
        with contextlib.suppress(asyncpg.exceptions.DuplicatePreparedStatementError):
            await driver.execute(f"PREPARE {name} (text, text[]) AS INSERT INTO {table} (consumer, event_id) "
                                 "SELECT $1, e FROM unnest($2) AS e ON CONFLICT DO NOTHING")
        done.add(name)
    return name


@functools.lru_cache(maxsize=256)
def _claim_statement(table: str) -> TextClause:
    """The multi-row claim of a ``processed_events`` table, parsed once (``text()`` parses it each time)."""
    return text(f"INSERT INTO {table} (consumer, event_id) SELECT :consumer, e "
                "FROM unnest(CAST(:ids AS text[])) AS e ON CONFLICT DO NOTHING RETURNING event_id")


@functools.lru_cache(maxsize=256)
def _ours_statement(table: str) -> TextClause:
    """Which of the ids this transaction claimed (rows it inserted have its transaction id as ``xmin``).

    One primary-key probe per id (a subquery on the whole key): a plain ``event_id = ANY(...)`` filter let the
    planner choose a sequential scan of the whole table, planned while it was small and kept as it grew (78 ms
    a batch at 20,000 rows, whenever the express lane had claimed some of a batch's events first)."""
    return text(f"SELECT e FROM unnest(CAST(:ids AS text[])) AS e WHERE (SELECT p.xmin::text::bigint FROM {table} "
                "AS p WHERE p.consumer = :consumer AND p.event_id = e) = txid_current() % 4294967296")
