"""The backbone wiring of one service process: database, topics, producer, outbox relay, consumer runner.

A service's composition root builds one ``ServiceRuntime`` with its schema's ``MetaData`` (with the
backbone tables added), its ``EventHandlers`` table (``registry``: what it consumes and emits), the deps
its handlers reach through ``ctx.deps``, a clock, and its settings; then either uses ``lifespan`` in its
FastAPI app or ``run_forever()`` for a headless worker. State written outside a consumer (HTTP handlers,
timers, schedulers) goes through ``transaction()``, with the same ``emit`` as a handler's. Kafka may be down at start: the relay and the
runner keep retrying while the HTTP side (e.g. intake) keeps accepting into the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from pathlib import Path
from typing import Any

from leadbridge_contracts.events import EventData
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .admin import ensure_topics
from .clock import Clock, utcnow
from .consumer import ConsumerRunner
from .db import create_schema, make_engine, session_factory
from .migrations import migrate
from .producer import EventProducer
from .registry import EventHandlers
from .relay import OutboxRelay
from .settings import BackboneSettings
from .shutdown import run_to_completion, stop_on_signals
from .transaction import Transaction, UndeclaredEmit, open_transaction

STOP_GRACE_SECONDS = 15.0  # for the consumer's record in flight, its commit and leaving the group
TASK_STOP_SECONDS = 10.0  # for every other task once cancelled
LINGER_BYTES = 1 << 20  # a lingering consumer's fetch returns at once when this much is there (``consumer_linger_ms``)


def serve_metrics_separately(settings: BackboneSettings) -> Any:
    """With ``METRICS_PORT`` set, /metrics is served there (and no longer on the API's port)."""
    if not settings.metrics_port:
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    except OSError as exc:  # e.g. a second worker process of the same service: the first one serves it
        log.warning("metrics port %s not available: %s", settings.metrics_port, exc)
        return None
    return server

log = logging.getLogger("leadbridge.runtime")


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        settings: BackboneSettings,
        metadata: MetaData,
        handlers: EventHandlers | None = None,
        deps: Any = None,
        clock: Clock = utcnow,
        emits: Iterable[type[EventData]] = (),
        group_id: str | None = None,
        engine: AsyncEngine | None = None,
        migrations: Path | None = None,
        **runner_options: Any,
    ) -> None:
        self.name = name
        self.settings = settings
        self.metadata = metadata
        # a service with no consumer still declares what it emits (``emits``); with one, its table does
        self.handlers = handlers if handlers is not None else EventHandlers(emits=emits)
        self.deps = deps
        self.clock = clock
        self.group_id = group_id or name
        self.engine = engine or make_engine(settings.database_url, lock_timeout_ms=settings.db_lock_timeout_ms,
                                            statement_timeout_ms=settings.db_statement_timeout_ms)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)
        self.outbox: Table = metadata.tables[f"{metadata.schema}.outbox"]
        self.processed: Table = metadata.tables[f"{metadata.schema}.processed_events"]
        self.producer = self._new_producer()
        self.relay = OutboxRelay(self.engine, self.outbox, self.producer,
                                 max_in_flight_batches=settings.outbox_max_in_flight_batches,
                                 keep_sent=settings.outbox_keep_sent)
        self.runner: ConsumerRunner | None = None
        self.migrations = migrations
        self._runner_options = runner_options
        self._tasks: list[asyncio.Task[None]] = []
        self.kafka_ready = asyncio.Event()
        self.consumer_failures = 0
        self._consumer_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_task: asyncio.Future[None] | None = None
        self._metrics_server: Any = None

    async def start(self) -> None:
        try:
            if self.migrations is not None and self.migrations.is_dir():
                await migrate(self.engine, self.metadata, self.migrations)  # versioned schema changes (Alembic)
            else:
                await create_schema(self.engine, self.metadata)
            self._tasks.append(asyncio.create_task(self._kafka_side(), name=f"{self.name}-kafka"))
            self._metrics_server = serve_metrics_separately(self.settings)
        except BaseException:  # a failed or cancelled start leaves nothing running behind
            await self.stop()
            raise

    async def _kafka_side(self) -> None:
        backoff = 0.5
        while True:  # Kafka may be down: keep trying, the outbox keeps the events meanwhile
            try:
                await ensure_topics(self.settings.kafka_bootstrap_servers, attempts=1,
                                    replication_factor=self.settings.kafka_replication_factor,
                                    min_insync_replicas=self.settings.kafka_min_insync_replicas)
                await self.producer.start()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kafka not reachable yet: %s", exc)
                with contextlib.suppress(Exception):
                    await self.producer.stop()
                self.producer = self._new_producer()
                self.relay.use_producer(self.producer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if len(self.handlers):
            self.runner = self._new_runner()
        self.kafka_ready.set()
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        if len(self.handlers):
            self._consumer_task = asyncio.create_task(self._consume_forever(), name=f"{self.name}-consumer")
            self._tasks.append(self._consumer_task)

    def _new_producer(self) -> EventProducer:
        return EventProducer(self.settings.kafka_bootstrap_servers, client_id=self.name,
                             linger_ms=self.settings.kafka_producer_linger_ms)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a service's own background loop (a timer, a fetcher, a scheduler) for the runtime's lifetime.

        ``stop()`` cancels it with the runtime's own tasks, bounded, so no service writes its own shutdown.
        """
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def _new_runner(self) -> ConsumerRunner:
        return ConsumerRunner(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            handlers=self.handlers,
            deps=self.deps,
            clock=self.clock,
            sessions=self.sessions,
            processed=self.processed,
            outbox=self.outbox,
            producer=self.producer,
            **{"max_attempts": self.settings.handler_max_attempts,
               "backoff_seconds": self.settings.handler_backoff_seconds,
               "batch_size": self.settings.consumer_batch_size,
               "batch_wait_ms": self.settings.consumer_batch_wait_ms,
               "commit_interval_ms": self.settings.consumer_commit_interval_ms, **self._lingering(),
               **self._runner_options},
        )

    def _lingering(self) -> dict[str, int]:
        """The consumer's fetch options for ``consumer_linger_ms``: the broker answers a fetch once it has
        ``LINGER_BYTES`` or the linger has passed, whichever comes first (Kafka's fetch.min.bytes and
        fetch.max.wait.ms); a backlog has the bytes at once, so only a trickle waits."""
        linger = self.settings.consumer_linger_ms
        return {"fetch_max_wait_ms": linger, "fetch_min_bytes": LINGER_BYTES} if linger else {}

    async def _consume_forever(self) -> None:
        """Run the consumer; if it dies (Kafka gone at the wrong moment, a client bug), rebuild and restart it."""
        backoff = 0.5
        while not self._stopping:
            assert self.runner is not None
            try:
                await self.runner.run()
                return  # stopped on purpose
            except asyncio.CancelledError:
                raise
            except UndeclaredEmit:  # a bug: restarting would only hit it again; /readyz reports the consumer down
                self.consumer_failures += 1
                log.critical("consumer stopped: a handler emitted an undeclared event type", exc_info=True,
                             extra={"group": self.group_id})
                raise
            except Exception:
                self.consumer_failures += 1
                log.exception("consumer crashed; restarting it", extra={"group": self.group_id})
            if self._stopping:
                return  # type: ignore[unreachable]  # stop() sets it while the runner ran: mypy cannot see that
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            self.runner = self._new_runner()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction of this service's database: write state on ``tx.session``, ``await tx.emit(event)``;
        the emitted events are written to the outbox (one insert) just before the commit, with the state."""
        async with open_transaction(self.sessions, self.outbox, emits=self.handlers.emitted_types,
                                    clock=self.clock, service=self.name) as tx:
            yield tx

    async def stop(self) -> None:
        """Stop, in order and bounded: the consumer finishes its record in flight, commits and leaves the group
        (``STOP_GRACE_SECONDS``, then the record is cut off and redelivered to the next owner); then the relay
        and the service's own tasks are cancelled; then the producer and the database pool are closed.

        Idempotent, and it runs to its end even when the caller is cancelled meanwhile (``shutdown``).
        """
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._shut_down())
        await run_to_completion(self._stop_task)

    async def _shut_down(self) -> None:
        self._stopping = True
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self.runner is not None and self._consumer_task is not None and not self._consumer_task.done():
            self.runner.stop()
            _, busy = await asyncio.wait({self._consumer_task}, timeout=STOP_GRACE_SECONDS)
            if busy:
                log.warning("consumer still busy after %s s: cancelling its record in flight", STOP_GRACE_SECONDS,
                            extra={"group": self.group_id})
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a task that will not stop must not hang the service's shutdown
            _, stuck = await asyncio.wait(self._tasks, timeout=TASK_STOP_SECONDS)
            for task in stuck:
                log.error("task did not stop within %s s: %s", TASK_STOP_SECONDS, task.get_name())
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.producer.stop(), TASK_STOP_SECONDS)
        await self.engine.dispose()

    async def ready(self) -> dict[str, str]:
        """Readiness of the database and Kafka, for ``/readyz``."""
        kafka_ok = self.kafka_ready.is_set() and (self._consumer_task is None or not self._consumer_task.done())
        status = {"database": "ok", "kafka": "ok" if kafka_ok else "unavailable"}
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            status["database"] = f"unavailable: {type(exc).__name__}"
        return status

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def run_forever(self) -> None:
        """Run headless until SIGTERM or SIGINT, or until the task running it is cancelled; either way stop
        cleanly (see ``stop``) and give the process's signal handlers back as they were."""
        stop = asyncio.Event()
        with stop_on_signals(stop.set):
            await self.start()
            try:
                await stop.wait()
            finally:
                await self.stop()
