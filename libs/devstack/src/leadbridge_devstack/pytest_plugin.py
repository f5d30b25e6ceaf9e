"""pytest fixtures: a real Kafka broker and a real PostgreSQL for the whole test session.

Where they come from, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` set: that existing stack is reused (e.g. ``make up``);
2. a Docker engine answers: testcontainers starts ``apache/kafka`` (KRaft) and ``postgres``;
3. otherwise: a local Kafka broker from Maven Central jars on the machine's Java, and a throwaway
   PostgreSQL cluster from the machine's binaries. A missing Java or PostgreSQL fails with one
   clear message that says what to install; nothing is skipped.

The local broker is one node unless ``pytest --kafka-brokers 3`` (or ``LEADBRIDGE_KAFKA_BROKERS=3``) asks for
a cluster. Tests that need a cluster whatever the session uses (broker crashes, replicas) take the
``kafka_cluster`` fixture: a three-broker ``KafkaCluster`` of their own for the session, with ``.kill(i)``,
``.restart(i)`` and ``.bootstrap_servers`` (see cluster.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .cluster import KafkaCluster
from .kafka import KafkaBroker, MissingJavaError
from .ports import free_port
from .postgres import MissingPostgresError, PostgresCluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kafka-brokers", type=int, default=int(os.environ.get("LEADBRIDGE_KAFKA_BROKERS", "1")),
                     help="brokers of the local Kafka the test session starts (default 1; 3 for a KRaft cluster "
                          "with replication factor 3 and min.insync.replicas 2)")


@dataclass
class Stack:
    bootstrap_servers: str
    database_url: str
    origin: str
    _cleanup: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self._cleanup):
            try:
                fn()
            except Exception:
                pass


def _docker_engine_available() -> bool:
    if os.environ.get("LEADBRIDGE_NO_DOCKER") or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the unprivileged postgres user must reach it when we run as root
    return path


def start_local_broker() -> tuple[KafkaBroker, Path]:
    broker = KafkaBroker.throwaway()
    return broker, broker.data_dir


def _containers() -> Stack:
    """Kafka (the official apache/kafka image, KRaft) and PostgreSQL in Docker, through testcontainers.

    testcontainers' own KafkaContainer drives Confluent's image, so the broker is a generic container whose
    advertised listener is a host port chosen up front.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    host_port = free_port()
    kafka = (
        DockerContainer("apache/kafka:4.1.1")
        .with_bind_ports(19092, host_port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="INTERNAL://:9092,CONTROLLER://:9093,HOST://:19092",
            KAFKA_ADVERTISED_LISTENERS=f"INTERNAL://localhost:9092,HOST://127.0.0.1:{host_port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,HOST:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="INTERNAL",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_NUM_PARTITIONS="6",
        )
    )
    kafka.start()
    wait_for_logs(kafka, "Kafka Server started", timeout=120)
    pg = PostgresContainer("postgres:16", driver="asyncpg")
    pg.start()
    stack = Stack(f"127.0.0.1:{host_port}", pg.get_connection_url(), "testcontainers")
    stack._cleanup += [kafka.stop, pg.stop]
    return stack


def _start_stack(brokers: int = 1) -> Stack:
    env_kafka, env_db = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    if env_kafka and env_db:
        return Stack(env_kafka, env_db, "environment")
    if _docker_engine_available():
        return _containers()
    try:
        pg_dir = _tmpdir("leadbridge-pg-")
        # fast, not durable: nothing crashes this shared cluster (a test that crashes PostgreSQL starts its own)
        pg = PostgresCluster(pg_dir, free_port(), durable=False).start(log=lambda *_: None)
        stack = Stack("", pg.url, "local processes")
        stack._cleanup += [lambda: shutil.rmtree(pg_dir, ignore_errors=True), pg.stop]
        if env_kafka:
            stack.bootstrap_servers = env_kafka
        else:
            cluster = KafkaCluster.throwaway(brokers)
            stack.bootstrap_servers = cluster.bootstrap_servers
            stack._cleanup += [cluster.remove]
        if env_db:
            stack.database_url = env_db
        return stack
    except (MissingJavaError, MissingPostgresError) as exc:
        pytest.exit(f"cannot start the test stack: {exc}", returncode=3)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = _start_stack(request.config.getoption("--kafka-brokers"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A three-broker KRaft cluster of its own (started on first use): for crash and replica tests."""
    try:
        cluster = KafkaCluster.throwaway(brokers=3)
    except MissingJavaError as exc:
        pytest.exit(f"cannot start the Kafka cluster: {exc}", returncode=3)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.bootstrap_servers


def _throwaway_database(stack: Stack) -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    import asyncpg

    base = stack.database_url
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def sync(sql: str) -> None:
        # run in a private loop: the test's own loop may be running already
        import threading

        errors: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(run(sql))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if errors:
            raise errors[0]

    sync(f'CREATE DATABASE "{name}"')
    head, _, _ = base.rpartition("/")
    yield f"{head}/{name}"
    sync(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database_url(stack: Stack) -> Iterator[str]:
    """A new, empty database on the test server for one test; dropped afterwards."""
    yield from _throwaway_database(stack)


@pytest.fixture
def second_database_url(stack: Stack) -> Iterator[str]:
    """Another new, empty database beside ``fresh_database_url`` (e.g. two code paths run side by side)."""
    yield from _throwaway_database(stack)


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: for topics, consumer groups and schemas."""
    return f"t{uuid.uuid4().hex[:10]}"
