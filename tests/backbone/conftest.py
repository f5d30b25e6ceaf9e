"""Fixtures for backbone integration tests: a test schema with the backbone tables, ad-hoc topics."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from leadbridge_contracts.topics import Topic
from leadbridge_devstack.ports import free_port
from leadbridge_devstack.postgres import PostgresCluster
from leadbridge_events.admin import ensure_topics
from leadbridge_events.db import add_backbone_tables, create_schema, make_engine, session_factory
from leadbridge_events.producer import EventProducer
from sqlalchemy import Column, Integer, MetaData, String, Table


class Backbone:
    """A throwaway 'service': its schema, engine, tables and a producer."""

    def __init__(self, database_url: str, schema: str) -> None:
        self.metadata = MetaData(schema=schema)
        self.outbox, self.processed = add_backbone_tables(self.metadata)
        self.effects = Table(
            "effects", self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(64), nullable=False),
            Column("lead_id", String(64), nullable=False),
            Column("seq", Integer),
        )
        self.engine = make_engine(database_url)
        self.sessions = session_factory(self.engine)


@pytest.fixture
async def backbone(fresh_database_url, unique_name):
    bb = Backbone(fresh_database_url, unique_name)
    await create_schema(bb.engine, bb.metadata)
    yield bb
    await bb.engine.dispose()


@pytest.fixture
async def producer(kafka_bootstrap):
    async with EventProducer(kafka_bootstrap) as p:
        yield p


@pytest.fixture
async def topic(kafka_bootstrap, unique_name):
    t = Topic(f"{unique_name}-events", ("lead-captured",), partitions=4)
    await ensure_topics(kafka_bootstrap, [t])
    return t


@pytest.fixture
def own_postgres():
    """A durable PostgreSQL cluster (as `make run` starts it) for one test, so crashing it disturbs no other."""
    data = Path(tempfile.mkdtemp(prefix="leadbridge-pg-crash-"))
    data.chmod(0o755)  # the unprivileged postgres user must reach it when we run as root
    cluster = PostgresCluster(data, free_port()).start(log=lambda *_: None)
    assert cluster.durable
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(data, ignore_errors=True)
