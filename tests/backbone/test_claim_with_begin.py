"""The consumer's claim carries its transaction's BEGIN (one round trip, not two), against the real database:
every id fresh, some claimed already (a redelivery), a claim racing a concurrent one, a rollback leaving the
connection clean, and ids that cannot be inlined taking the parameterised path."""

from __future__ import annotations

import asyncio
import re
import uuid
from types import SimpleNamespace

import pytest
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.failures import is_transient
from leadbridge_events.idempotency import ClaimNotPrepared, _ours_statement, claim_events
from sqlalchemy import Column, MetaData, String, Table, event, select, text

from .conftest import Backbone
from .test_consumer_runner import _ge, activity, count_effects, make_runner, wait_for

pytestmark = pytest.mark.integration


class Logged:
    """A backbone whose engine logs every query its asyncpg connections send."""

    def __init__(self, backbone: Backbone, pool_size: int = 2) -> None:
        self.queries: list[str] = []
        self.engine = make_engine(str(backbone.engine.url.render_as_string(hide_password=False)), pool_size=pool_size,
                                  max_overflow=0)
        self.sessions = session_factory(self.engine)

        @event.listens_for(self.engine.sync_engine, "connect")
        def _log(dbapi_connection, _record) -> None:
            dbapi_connection.driver_connection.add_query_logger(lambda q: self.queries.append(q.query))

    def begins(self) -> list[str]:
        return [q for q in self.queries if q.strip().upper().startswith("BEGIN")]


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def _claimed(backbone: Backbone, group: str) -> set[str]:
    async with backbone.engine.connect() as conn:
        rows = await conn.execute(select(backbone.processed.c.event_id).where(backbone.processed.c.consumer == group))
        return set(rows.scalars())


async def test_every_fresh_id_is_claimed_in_the_round_trip_that_begins_the_transaction(backbone, unique_name):
    logged = Logged(backbone)
    try:
        wanted = ids(3)
        async with logged.sessions() as session, session.begin():
            assert await claim_events(session, backbone.processed, unique_name, wanted + wanted[:1], first=True) \
                == set(wanted)
            assert (await session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() "
                                               "AND state = 'active' AND xact_start IS NOT NULL"))).scalar_one() == 1
        assert [b.split(";")[0] for b in logged.begins()] == ["BEGIN"]  # one BEGIN, and it carried the claim
        assert "EXECUTE leadbridge_claim_" in logged.begins()[0]
        assert await _claimed(backbone, unique_name) == set(wanted)  # committed
    finally:
        await logged.engine.dispose()


async def test_ids_claimed_already_are_left_out(backbone, unique_name):
    logged = Logged(backbone)
    try:
        earlier, fresh = ids(2), ids(2)
        async with logged.sessions() as session, session.begin():
            await claim_events(session, backbone.processed, unique_name, earlier, first=True)
        async with logged.sessions() as session, session.begin():
            got = await claim_events(session, backbone.processed, unique_name, [earlier[0], *fresh, earlier[1]],
                                     first=True)
        assert got == set(fresh)
        async with logged.sessions() as session, session.begin():  # all claimed: nothing fresh
            assert await claim_events(session, backbone.processed, unique_name, earlier + fresh, first=True) == set()
        assert await _claimed(backbone, unique_name) == set(earlier + fresh)
    finally:
        await logged.engine.dispose()


async def test_a_claim_racing_another_waits_for_it_and_gets_only_what_it_did_not_take(backbone, unique_name):
    logged = Logged(backbone)
    try:
        shared, mine = ids(1), ids(1)
        async with logged.sessions() as first, first.begin():
            assert await claim_events(first, backbone.processed, unique_name, shared, first=True) == set(shared)
            async with logged.sessions() as second:
                async with second.begin():
                    racing = asyncio.create_task(claim_events(second, backbone.processed, unique_name, shared + mine,
                                                              first=True))
                    await asyncio.sleep(0.3)
                    assert not racing.done()  # waits on the first transaction's row
                    await first.commit()
                    assert await racing == set(mine)
    finally:
        await logged.engine.dispose()


async def test_a_rolled_back_claim_leaves_no_row_and_a_clean_connection(backbone, unique_name):
    logged = Logged(backbone, pool_size=1)
    try:
        wanted = ids(2)
        with pytest.raises(RuntimeError):
            async with logged.sessions() as session, session.begin():
                await claim_events(session, backbone.processed, unique_name, wanted, first=True)
                raise RuntimeError("the handler failed")
        assert await _claimed(backbone, unique_name) == set()
        async with logged.sessions() as session, session.begin():  # the pool's one connection, out of the transaction
            assert await claim_events(session, backbone.processed, unique_name, wanted, first=True) == set(wanted)
        assert await _claimed(backbone, unique_name) == set(wanted)
        missing = Table("missing", MetaData(schema=unique_name), Column("consumer", String), Column("event_id", String))
        with pytest.raises(Exception, match="does not exist"):
            async with logged.sessions() as session, session.begin():  # a claim that fails: rolled back too
                await claim_events(session, missing, unique_name, ids(1), first=True)
        async with logged.sessions() as session, session.begin():
            assert await claim_events(session, backbone.processed, unique_name, ids(1), first=True)
    finally:
        await logged.engine.dispose()


async def test_ids_that_cannot_be_inlined_are_claimed_with_parameters(backbone, unique_name):
    logged = Logged(backbone)
    try:
        odd = ["it's", "back\\slash", "é", ""]
        async with logged.sessions() as session, session.begin():
            assert await claim_events(session, backbone.processed, unique_name, odd, first=True) == set(odd)
        assert [b.strip().rstrip(";") for b in logged.begins()] == ["BEGIN"]  # BEGIN on its own, as before
        assert await _claimed(backbone, unique_name) == set(odd)
    finally:
        await logged.engine.dispose()


async def test_the_runners_batches_send_no_begin_of_their_own(backbone, producer, kafka_bootstrap, topic,
                                                              unique_name):
    logged = Logged(backbone)
    logging_backbone = SimpleNamespace(sessions=logged.sessions, processed=backbone.processed, outbox=backbone.outbox)

    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))

    runner = make_runner(logging_backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=50)
    task = asyncio.create_task(runner.run())
    try:
        await runner.wait_assigned()
        events = [activity(f"lead-{uuid.uuid4()}", i) for i in range(20)]
        await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                     for e in events)
        await wait_for(lambda: _ge(count_effects(backbone), 20))
        await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                     for e in events[:5])  # redelivered: claimed already, no effect
        await asyncio.sleep(1.0)
        assert await count_effects(backbone) == 20
        assert runner.stats.transactions >= 2
        assert len(logged.begins()) == runner.stats.transactions  # one per batch transaction...
        assert all("EXECUTE leadbridge_claim_" in b for b in logged.begins())  # ...and each carried the claim
    finally:
        runner.stop()
        await task
        await logged.engine.dispose()


async def test_a_claim_whose_prepared_statement_was_dropped_is_transient_and_prepared_again(backbone, unique_name):
    logged = Logged(backbone, pool_size=1)
    try:
        async with logged.sessions() as session, session.begin():
            await claim_events(session, backbone.processed, unique_name, ids(1), first=True)
        async with logged.sessions() as session:
            await session.execute(text("DEALLOCATE ALL"))  # e.g. a DISCARD ALL by some pooler
            await session.commit()
        wanted = ids(2)
        with pytest.raises(ClaimNotPrepared) as raised:
            async with logged.sessions() as session, session.begin():
                await claim_events(session, backbone.processed, unique_name, wanted, first=True)
        assert is_transient(raised.value)  # waited out and retried, never a dead letter
        async with logged.sessions() as session, session.begin():  # the retry prepares it again
            assert await claim_events(session, backbone.processed, unique_name, wanted, first=True) == set(wanted)
    finally:
        await logged.engine.dispose()


async def test_a_partial_claim_is_read_back_by_primary_key_however_much_the_table_grew(backbone, unique_name):
    """The read-back after a partial claim (the express lane took some of a batch's events first) probes the
    primary key, even with a plan made while the table was empty and kept as it grew, statistics never taken:
    a plain ``event_id = ANY(...)`` filter was a sequential scan of the whole table there (78 ms a batch)."""
    table = backbone.processed.fullname
    ours = _ours_statement(table).text.replace(":consumer", "$1").replace(":ids", "$2")
    wanted = ",".join(f"'old-{i}'" for i in range(1, 101))
    async with backbone.engine.connect() as conn:
        await conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))  # no ANALYZE meanwhile
        await conn.commit()
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))  # cached at its first execution
        await conn.execute(text(f"PREPARE ours (text, text[]) AS {ours}"))
        await conn.execute(text(f"EXECUTE ours('{unique_name}', ARRAY[{wanted}])"))  # planned now: table empty
        async with backbone.engine.begin() as other:
            await other.execute(text(f"INSERT INTO {table} (consumer, event_id) "
                                     "SELECT :c, 'old-' || g FROM generate_series(1, 20000) AS g"), {"c": unique_name})
        plans = {}
        for mode in ("force_generic_plan", "force_custom_plan"):
            await conn.execute(text(f"SET plan_cache_mode = {mode}"))
            plans[mode] = "\n".join((await conn.execute(text(
                f"EXPLAIN EXECUTE ours('{unique_name}', ARRAY[{wanted}])"))).scalars())
        await conn.rollback()
    for mode, plan in plans.items():  # both columns of the key in the index condition: one row per id, not all
        assert "Seq Scan" not in plan and "Bitmap" not in plan, f"{mode}:\n{plan}"
        assert f"Index Scan using {backbone.processed.name}_pkey" in plan, f"{mode}:\n{plan}"
        assert re.search(r"Index Cond: \(\(\(consumer\)::text = .*\) AND \(\(event_id\)::text = ", plan), plan


_SETTINGS = text("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')")


@pytest.mark.parametrize("wanted", [ids(2), ["it's", "é"]], ids=["inlined", "parameterised"])
async def test_a_batch_is_planned_per_execution_and_the_connection_goes_back_as_it_was(backbone, unique_name,
                                                                                       wanted):
    """Cached generic plans made while a table was small stayed sequential scans as it grew, and fresh plans
    still preferred them on tables of tens of thousands of rows: a consumer's batch transaction plans its keyed
    statements per execution and by index, and only it (SET LOCAL)."""
    logged = Logged(backbone, pool_size=1)
    try:
        async with logged.sessions() as session, session.begin():
            await claim_events(session, backbone.processed, unique_name, wanted, first=True)
            inside = (await session.execute(_SETTINGS)).one()
        async with logged.sessions() as session, session.begin():  # the pool's one connection, next transaction
            after = (await session.execute(_SETTINGS)).one()
        assert tuple(inside) == ("force_custom_plan", "off") and tuple(after) == ("auto", "on")
    finally:
        await logged.engine.dispose()
