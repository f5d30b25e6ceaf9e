"""A consumer process that dies (SIGKILL) right after its database commit, before its offset commit.

Run by test_crash_redelivery.py: python crashing_consumer.py BOOTSTRAP DATABASE_URL SCHEMA TOPIC GROUP
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from leadbridge_contracts.events import LeadActivityRecorded
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.db import add_backbone_tables, make_engine, session_factory
from leadbridge_events.producer import EventProducer
from leadbridge_events.registry import EventHandlers, on
from sqlalchemy import Column, Integer, MetaData, String, Table


async def main(bootstrap: str, database_url: str, schema: str, topic: str, group: str) -> None:
    metadata = MetaData(schema=schema)
    outbox, processed = add_backbone_tables(metadata)
    effects = Table("effects", metadata, Column("id", Integer, primary_key=True), Column("event_id", String(64)),
                    Column("lead_id", String(64)), Column("seq", Integer))
    engine = make_engine(database_url)

    async def handler(event, ctx):
        await ctx.session.execute(effects.insert().values(event_id=event.id, lead_id=event.lead_id))

    def die(record):  # the transaction has committed; the offset has not
        os.kill(os.getpid(), signal.SIGKILL)

    async with EventProducer(bootstrap) as producer:
        runner = ConsumerRunner(bootstrap_servers=bootstrap, group_id=group, handlers=EventHandlers(on(LeadActivityRecorded, handler)),
                                topics=[topic],
                                sessions=session_factory(engine), processed=processed, outbox=outbox,
                                producer=producer, on_committed=die)
        await runner.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
