"""Failure classification, in one place: is an error the record's own fault, or an outage to wait out?

Every consumer, relay, timer and fetcher asks ``classify(exc)`` (or ``is_transient(exc)``):

* ``Verdict.TRANSIENT`` -- a dependency is down, restarting, overloaded or briefly in the way. Retried
  without limit with capped backoff; never dead-lettered, never parked, never a 500 (HTTP answers 503).
* ``Verdict.RECORD_FAULT`` -- everything else: the record (or the code handling it) is at fault. A consumer
  retries it ``max_attempts`` times, then dead-letters it; the relay parks it.

Transient, by SQLSTATE (read from the asyncpg error, from SQLAlchemy's ``DBAPIError.orig`` or anywhere on
the ``orig`` / ``__cause__`` chain):

* class ``08`` connection exception, ``53`` insufficient resources (too many connections, disk full, out
  of memory), ``58`` system error (I/O);
* ``57P01`` admin shutdown, ``57P02`` crash shutdown, ``57P03`` cannot connect now (starting up, in
  recovery), ``57P05`` idle-session timeout, ``25P03`` idle-in-transaction timeout (the session is gone);
* ``25006`` read-only transaction (a standby that is being promoted after a failover);
* ``40001`` serialization failure, ``40P01`` deadlock: the transaction was rolled back; a retry succeeds;
* ``55P03`` lock not available (``lock_timeout``) and ``57014`` query cancelled (``statement_timeout`` or an
  operator's ``pg_cancel_backend``). Decision: both are *transient*. A statement that waits 10 s for a lock or
  runs 30 s is a sign of contention or overload -- an operations problem -- and the same record succeeds once
  it is over; dead-lettering it would strand good leads during exactly the incidents we promise to survive.
  A truly pathological record holds its partition instead, which the consumer-lag alert reports.

Transient without a SQLSTATE: a lost connection (``OSError``/``ConnectionError``/``TimeoutError``, asyncpg's
``InterfaceError`` "connection is closed", SQLAlchemy ``OperationalError``/``InterfaceError``, a
``DBAPIError`` with ``connection_invalidated``, the pool's ``TimeoutError``/``DisconnectionError``), and Kafka
being unavailable (aiokafka ``KafkaConnectionError``, ``KafkaTimeoutError``, ``NodeNotReadyError``, and every
error aiokafka marks ``retriable``).

``describe(exc)`` is the error text safe to store in a dead letter's headers or a parked row: the exception
type, SQLSTATE and constraint/table names of a database error -- never its message, which can quote values.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import asyncpg
from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc

K = TypeVar("K")


class Verdict(enum.Enum):
    TRANSIENT = "transient"
    RECORD_FAULT = "record_fault"


TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
TRANSIENT_SQLSTATES = frozenset({
    "57P01", "57P02", "57P03", "57P05",  # shutdown, crash, cannot connect now, idle-session timeout
    "25P03",  # idle-in-transaction timeout: the server closed the session
    "25006",  # read-only transaction: a failover in progress
    "40001", "40P01",  # serialization failure, deadlock
    "55P03",  # lock_timeout
    "57014",  # statement_timeout / pg_cancel_backend
})

_TRANSIENT_KAFKA = (
    kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError, kafka_errors.NodeNotReadyError,
    kafka_errors.KafkaUnavailableError, kafka_errors.NoBrokersAvailable, kafka_errors.BrokerNotAvailableError,
    kafka_errors.RequestTimedOutError,
)
_CONNECTION_LOSS = (
    OSError,  # includes ConnectionError and TimeoutError (asyncio.TimeoutError is TimeoutError)
    asyncpg.exceptions.InterfaceError,  # "cannot call ...: connection is closed"
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig``, then explicit causes (``raise ... from``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a database error, wherever it sits on the chain; None if there is none."""
    for link in _chain(exc):
        code = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return None


def _transient_sqlstate(code: str) -> bool:
    return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES


def classify(exc: BaseException) -> Verdict:
    """TRANSIENT for an outage or contention (retry without limit), RECORD_FAULT otherwise."""
    code = sqlstate(exc)
    if code is not None:
        if _transient_sqlstate(code):
            return Verdict.TRANSIENT
        for link in _chain(exc):  # a statement error on a connection that died meanwhile is still an outage
            if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
                return Verdict.TRANSIENT
        return Verdict.RECORD_FAULT
    for link in _chain(exc):
        if isinstance(link, _CONNECTION_LOSS) or isinstance(link, _TRANSIENT_KAFKA):
            return Verdict.TRANSIENT
        if isinstance(link, kafka_errors.KafkaError) and link.retriable:
            return Verdict.TRANSIENT
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return Verdict.TRANSIENT
    return Verdict.RECORD_FAULT


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is Verdict.TRANSIENT


def describe(exc: BaseException, *, limit: int = 500) -> str:
    """Error text without values: safe for dead-letter headers, parked rows and logs.

    A database error is named by type, SQLSTATE and the constraint/table/column it concerns (its message
    and detail can quote the offending values, e.g. an email in a unique violation). Any other error keeps
    its message: our own code writes those (``PoisonEvent("...")``) and must not put personal data in them.
    """
    code = sqlstate(exc)
    if code is None and not isinstance(exc, sa_exc.StatementError):
        return f"{type(exc).__name__}: {exc}"[:limit]
    names = []
    for link in _chain(exc):
        names.append(type(link).__name__)
        for attr in ("schema_name", "table_name", "column_name", "constraint_name"):
            value = getattr(link, attr, None)
            if value:
                names.append(f"{attr.removesuffix('_name')}={value}")
    parts = list(dict.fromkeys(names))  # keep order, drop repeats
    if code:
        parts.append(f"sqlstate={code}")
    return " ".join(parts)[:limit]


class OutageBackoff(Generic[K]):
    """Per-key capped exponential backoff for waiting out an outage (a consumer's paused partitions).

    ``pause(key)`` starts (or doubles, up to ``cap``) the key's wait; ``due()`` hands back the keys whose
    wait is over; ``forget(key)`` resets a key once it succeeded or is no longer ours.
    """

    def __init__(self, initial: float, cap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._initial, self._cap, self._clock = initial, cap, clock
        self._until: dict[K, float] = {}
        self._next: dict[K, float] = {}

    def pause(self, key: K) -> float:
        delay = self._next.get(key, self._initial)
        self._next[key] = min(delay * 2, self._cap)
        self._until[key] = self._clock() + delay
        return delay

    def due(self) -> list[K]:
        now = self._clock()
        ready = [key for key, until in self._until.items() if until <= now]
        for key in ready:
            del self._until[key]
        return ready

    def forget(self, key: K) -> None:
        self._until.pop(key, None)
        self._next.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)
