"""One way to write state and events together: a ``Transaction`` (its session, ``emit``, ``now``).

HTTP handlers, timers and schedulers get one from ``ServiceRuntime.transaction()``; consumer handlers get
its consumer flavour, ``HandlerContext`` (plus ``record`` and ``deps``), from the runner, and batch handlers
a ``BatchContext``. In each, ``emit`` only stages the event; the staged events are written to the outbox in
ONE multi-row insert (``outbox.stage_events``) just before the transaction commits, so they commit or roll
back with the state change.

``emit`` refuses an event type the service did not declare (``EventHandlers(..., emits=...)``) with
``UndeclaredEmit``: a programming error, found by the first test that exercises that path. It is not the
event's fault, so the consumer runner neither retries nor dead-letters it: it stops consuming with the
record uncommitted (nothing is lost; the service reports itself not ready) until the code is fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import Envelope
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .clock import Clock, utcnow
from .outbox import Staged, stage_events

Deps = TypeVar("Deps")


class UndeclaredEmit(TypeError):
    """A service emitted an event type missing from its declared ``emits``: fix the code or the table."""


def refuse_undeclared(event: Envelope[Any], emits: Collection[str], service: str = "") -> None:
    """Raise ``UndeclaredEmit`` unless ``event``'s type is one of ``emits`` (what every ``emit`` checks)."""
    if event.type not in emits:
        raise UndeclaredEmit(f"{service or 'this service'} emits {event.type!r} but does not declare it "
                             f"(declared: {sorted(emits)}); add it to the emits of its EventHandlers")


@dataclass
class Transaction:
    """A database transaction of a service: ``session`` for its state, ``emit`` for its events, ``now()``."""

    session: AsyncSession
    outbox: Table | None = None
    emits: Collection[str] = frozenset()  # the event types the service declared
    clock: Clock = utcnow
    service: str = ""
    staged: list[Staged] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock()

    async def emit(self, event: Envelope[Any], topic: str | None = None) -> None:
        """Stage ``event`` (for its type's topic, or ``topic``); written to the outbox at commit."""
        refuse_undeclared(event, self.emits, self.service)
        if self.outbox is None:
            raise RuntimeError("this transaction has no outbox table to emit into")
        self.staged.append((event, topic))

    async def flush(self) -> None:
        """Write the staged events (one insert, one NOTIFY). The owner of the transaction calls it before commit."""
        if self.staged:
            assert self.outbox is not None
            await stage_events(self.session, self.outbox, self.staged)
            self.staged.clear()


Transactions = Callable[[], AbstractAsyncContextManager[Transaction]]
"""What a timer or scheduler is given to write with: ``ServiceRuntime.transaction`` (or ``open_transaction``
bound to a test's sessions)."""


@asynccontextmanager
async def open_transaction(sessions: async_sessionmaker[AsyncSession], outbox: Table | None, *,
                           emits: Collection[str], clock: Clock = utcnow, service: str = "",
                           ) -> AsyncIterator[Transaction]:
    """Begin a transaction; on leaving the block, write its staged events to the outbox, then commit."""
    async with sessions() as session, session.begin():
        tx = Transaction(session=session, outbox=outbox, emits=emits, clock=clock, service=service)
        yield tx
        await tx.flush()


@dataclass
class HandlerContext(Transaction, Generic[Deps]):
    """What a consumer handler gets besides the event: the transaction, the record, and the service's deps."""

    record: ConsumerRecord | None = None
    deps: Deps = None  # type: ignore[assignment]  # None only for a service without dependencies

    @property
    def emitted(self) -> list[Envelope[Any]]:
        return [e for e, _ in self.staged]


@dataclass
class BatchContext(Transaction, Generic[Deps]):
    """What a batch handler gets: the batch's transaction, each event's record, the deps, ``emit``."""

    records: dict[str, ConsumerRecord] = field(default_factory=dict)  # event id -> its record
    deps: Deps = None  # type: ignore[assignment]  # None only for a service without dependencies

    def for_event(self, event: Envelope[Any]) -> HandlerContext[Deps]:
        """A one-event context inside this batch: same transaction, its emits join the batch's outbox insert."""
        return HandlerContext(session=self.session, outbox=self.outbox, emits=self.emits, clock=self.clock,
                              service=self.service, staged=self.staged, record=self.records.get(event.id),
                              deps=self.deps)
