"""Failure classification: real asyncpg / SQLAlchemy / aiokafka exceptions (constructed, not mocked) -> verdict.

The SQLAlchemy cases go through the asyncpg dialect's own translation (``_handle_exception_no_connection``)
and ``DBAPIError.instance``, so they are wrapped exactly as a failing statement wraps them in a service.
"""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from leadbridge_contracts.envelope import UndecodableEvent
from leadbridge_events.consumer import PoisonEvent
from leadbridge_events.failures import OutageBackoff, Verdict, classify, describe, is_transient, sqlstate
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

T, R = Verdict.TRANSIENT, Verdict.RECORD_FAULT
pgx = asyncpg.exceptions
_DBAPI = pg_asyncpg.AsyncAdapt_asyncpg_dbapi(asyncpg)


def wrapped(pg_error: Exception, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    """``pg_error`` as SQLAlchemy raises it from a statement run through the asyncpg dialect."""
    try:
        try:
            raise pg_error
        except Exception as raw:
            pg_asyncpg.AsyncAdapt_asyncpg_connection._handle_exception_no_connection(_DBAPI, raw)
    except _DBAPI.Error as adapted:
        return sa_exc.DBAPIError.instance(
            "INSERT INTO intake.leads (email) VALUES ($1)", {"email": "ada@example.com"}, adapted, _DBAPI.Error,
            hide_parameters=True, connection_invalidated=invalidated, dialect=pg_asyncpg.PGDialect_asyncpg(),
        )
    raise AssertionError("not translated")


def caused_by(outer: Exception, cause: BaseException) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:
        return exc


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "ada@example.com"})
    except ValidationError as exc:
        return exc
    raise AssertionError


CASES = [
    # -- the database restarting, failing over, out of slots, refusing connections
    ("cannot connect now (recovery)", pgx.CannotConnectNowError("the database system is starting up"), T),
    ("cannot connect now, wrapped", wrapped(pgx.CannotConnectNowError("the database system is in recovery mode")), T),
    ("admin shutdown, wrapped", wrapped(pgx.AdminShutdownError("terminating connection due to administrator command")), T),
    ("crash shutdown, wrapped", wrapped(pgx.CrashShutdownError("terminating connection because of crash")), T),
    ("too many connections, wrapped", wrapped(pgx.TooManyConnectionsError("sorry, too many clients already")), T),
    ("disk full (class 53)", wrapped(pgx.DiskFullError("could not extend file")), T),
    ("I/O error (class 58)", wrapped(pgx.PostgresIOError("could not read block")), T),
    ("connection failure (class 08)", wrapped(pgx.ConnectionFailureError("connection failure")), T),
    ("connection does not exist (08003)", pgx.ConnectionDoesNotExistError("connection was closed in the middle"), T),
    ("read-only after failover (25006)",
     wrapped(pgx.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")), T),
    ("idle-in-transaction timeout", wrapped(pgx.IdleInTransactionSessionTimeoutError("terminating connection")), T),
    # -- contention: the transaction was rolled back or gave up waiting; the same record succeeds later
    ("serialization failure", wrapped(pgx.SerializationError("could not serialize access")), T),
    ("deadlock", wrapped(pgx.DeadlockDetectedError("deadlock detected")), T),
    ("lock_timeout (55P03)", wrapped(pgx.LockNotAvailableError("canceling statement due to lock timeout")), T),
    ("statement_timeout (57014)", wrapped(pgx.QueryCanceledError("canceling statement due to statement timeout")), T),
    # -- a lost connection without a SQLSTATE
    ("connection refused", ConnectionRefusedError(111, "Connect call failed"), T),
    ("connection reset", ConnectionResetError(104, "Connection reset by peer"), T),
    ("client-side timeout", TimeoutError(), T),
    ("asyncpg: connection is closed", pgx.InterfaceError("cannot call Connection.execute(): connection is closed"), T),
    ("statement on an invalidated connection", wrapped(pgx.UniqueViolationError("dup"), invalidated=True), T),
    ("SQLAlchemy OperationalError around OSError",
     sa_exc.OperationalError("SELECT 1", None, ConnectionRefusedError(111, "refused")), T),
    ("pool exhausted", sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"), T),
    ("disconnection", sa_exc.DisconnectionError("connection invalidated"), T),
    ("a service wrapping an outage (raise ... from)", caused_by(RuntimeError("store failed"),
                                                                 wrapped(pgx.CannotConnectNowError("starting up"))), T),
    # -- Kafka unavailable
    ("kafka connection", kafka_errors.KafkaConnectionError("Unable to bootstrap from 127.0.0.1:9092"), T),
    ("kafka timeout", kafka_errors.KafkaTimeoutError(), T),
    ("kafka node not ready", kafka_errors.NodeNotReadyError("node 1"), T),
    ("kafka leader moving", kafka_errors.NotLeaderForPartitionError(), T),
    ("kafka request timed out", kafka_errors.RequestTimedOutError(), T),
    # -- the record's own fault (or the code's): retried max_attempts times, then dead-lettered / parked
    ("unique violation", wrapped(pgx.UniqueViolationError("duplicate key value")), R),
    ("value too long", wrapped(pgx.StringDataRightTruncationError("value too long for type character varying(500)")), R),
    ("numeric out of range", wrapped(pgx.NumericValueOutOfRangeError("integer out of range")), R),
    ("undefined column (a bug)", wrapped(pgx.UndefinedColumnError('column "x" does not exist')), R),
    ("kafka record too large", kafka_errors.MessageSizeTooLargeError(), R),
    ("poison event", PoisonEvent("can never apply"), R),
    ("undecodable", UndecodableEvent("missing CloudEvents header(s): ce_id"), R),
    ("handler bug", KeyError("score"), R),
    ("overflow", OverflowError("int too large to convert to float"), R),
    ("schema invalid", _validation_error(), R),
]


@pytest.mark.parametrize(("exc", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classification(exc, verdict):
    assert classify(exc) is verdict
    assert is_transient(exc) is (verdict is T)


def test_sqlstate_is_found_through_sqlalchemy_wrapping():
    assert sqlstate(wrapped(pgx.CannotConnectNowError("starting up"))) == "57P03"
    assert sqlstate(KeyError("x")) is None


def test_describe_keeps_values_out_of_the_error_text():
    err = pgx.UniqueViolationError("duplicate key value violates unique constraint")
    err.detail = "Key (email)=(ada@example.com) already exists."
    err.constraint_name = "uq_leads_email"
    err.table_name = "leads"
    text = describe(wrapped(err))
    assert "ada@example.com" not in text
    assert "sqlstate=23505" in text and "constraint=uq_leads_email" in text and "IntegrityError" in text
    assert describe(RuntimeError("downstream said no")) == "RuntimeError: downstream said no"


def test_outage_backoff_doubles_up_to_the_cap_and_resets():
    now = [0.0]
    backoff = OutageBackoff(0.2, 1.0, clock=lambda: now[0])
    assert [backoff.pause("p0") for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.due() == [] and len(backoff) == 1
    now[0] = 1.0
    assert backoff.due() == ["p0"] and len(backoff) == 0
    backoff.forget("p0")
    assert backoff.pause("p0") == 0.2
