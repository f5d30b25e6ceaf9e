"""Group commit at intake: concurrent captures gathered for a millisecond or two, stored in ONE transaction.

A durable commit (an fsync of the WAL) costs the same for one row or a hundred, and so does a round trip;
so ``GroupCommitter.capture`` queues the request and a background loop takes whatever has queued up (at
most ``max_group``), and stores the group with ``group_capture.capture_group`` on a
plain asyncpg connection of the service's pool. Each request still answers only after the transaction
holding its own lead has committed.

- Two captures of the same person (or with the same dedupe key) never share a group: the later one waits
  for the next group, and then sees the first's lead (an activity, or a duplicate), as one by one would.
- A group that fails before its commit (one bad lead, a deadlock, a dead pooled connection) is retried
  member by member on the one-lead path (``capture_in_transaction``): each request gets its own answer,
  and one bad lead fails only itself. A failure DURING the commit may have committed: every member gets
  the error (a 5xx), as the one-lead path does, rather than being stored twice.
- Up to ``max_in_flight`` groups commit at once; while one does, the next group gathers for
  ``window_seconds``. When none is committing, a capture is not held back: it commits at once (an idle
  service adds no wait to a lone request; under load, groups form while the previous ones commit).
- When the loop is not running (before start-up, after shutdown) captures go the one-lead path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from leadbridge_contracts.events import LeadProfile
from leadbridge_events.outbox import wake_after_commit
from leadbridge_events.tracing import resumed
from leadbridge_events.transaction import Transactions
from sqlalchemy.ext.asyncio import AsyncEngine

from .capture import CaptureResult, capture_in_transaction
from .group_capture import Member, capture_group
from .tables import SCHEMA

log = logging.getLogger("leadbridge.intake.group_commit")



@dataclass
class _Waiting:
    member: Member
    answer: asyncio.Future[CaptureResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    def __init__(self, engine: AsyncEngine, transaction: Transactions, *, window_seconds: float = 0.002,
                 max_group: int = 256, max_in_flight: int = 4) -> None:
        self._engine = engine
        self._transaction = transaction  # ``ServiceRuntime.transaction``: the one-lead path
        self._window = window_seconds
        self._max_group = max_group
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: deque[_Waiting] = deque()
        self._queued = asyncio.Event()
        self._running = False
        self._groups: set[asyncio.Task[None]] = set()
        self.groups_committed = 0  # for tests and the curious
        self.largest_group = 0

    async def capture(self, profile: LeadProfile, **options: Any) -> CaptureResult:
        """Store one capture (see ``capture.capture_lead`` for ``options``); returns once it is durable."""
        if not self._running:
            return await capture_in_transaction(self._transaction, profile, **options)
        waiting = _Waiting(Member(profile, **options))
        self._queue.append(waiting)
        self._queued.set()
        # awaited as it is (a shield cost a future and a turn of the loop per request): a request cancelled
        # while it waits cancels its answer only, never its group, and a cancelled answer counts as unanswered
        return await waiting.answer

    async def run(self) -> None:
        """The gathering loop; run it as a background task for the service's lifetime, cancel to stop."""
        self._running = True
        try:
            while True:
                await self._queued.wait()
                if self._groups:  # a group is committing: let concurrent requests join the next one
                    await asyncio.sleep(self._window)
                await self._slots.acquire()
                group = self._take()
                if not self._queue:
                    self._queued.clear()
                task = asyncio.create_task(self._commit(group))
                self._groups.add(task)
                task.add_done_callback(self._done)
        finally:
            self._running = False
            left = list(self._queue)
            self._queue.clear()
            for w in left:  # queued at shutdown: stored one by one, still answered
                self._groups.add(asyncio.create_task(self._one_by_one([w])))
            if self._groups:
                await asyncio.gather(*self._groups, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._groups.discard(task)
        self._slots.release()

    def _take(self) -> list[_Waiting]:
        """The queue's oldest members, none sharing a person or a dedupe key; the rest keep their places."""
        group: list[_Waiting] = []
        locks: set[str] = set()
        claims: set[tuple[str, str]] = set()
        kept: deque[_Waiting] = deque()
        while self._queue:
            w = self._queue.popleft()
            keys, claim = w.member.lock_keys, w.member.claim
            if len(group) >= self._max_group or locks.intersection(keys) or (claim and claim in claims):
                kept.append(w)
                if len(group) >= self._max_group:
                    break
                continue
            group.append(w)
            locks.update(keys)
            if claim:
                claims.add(claim)
        kept.extend(self._queue)
        self._queue = kept
        return group

    async def _commit(self, group: list[_Waiting]) -> None:
        committing = False
        try:
            async with self._engine.connect() as sa_conn:
                raw = await sa_conn.get_raw_connection()
                conn = raw.driver_connection
                try:
                    try:
                        results = await capture_group(conn, [w.member for w in group], self._engine)
                    except BaseException:
                        await conn.execute("ROLLBACK")  # capture_group began the transaction
                        raise
                    committing = True
                    await conn.execute("COMMIT")
                    wake_after_commit(self._engine, SCHEMA)
                    self._committed(group, results)  # answered at once, not after the pool took the connection
                except BaseException:
                    await sa_conn.invalidate()  # never hand a connection in an unknown state back to the pool
                    raise
        except Exception as exc:
            if self._answered(group):  # committed and answered; then giving the connection back failed
                log.warning("connection not returned after a group commit (%s)", type(exc).__name__)
                return
            if committing:
                log.error("group commit failed while committing; its %d captures fail", len(group),
                          extra={"error": type(exc).__name__})
                for w in group:
                    _settle(w.answer, exc=exc)
                return
            log.warning("group of %d failed before its commit (%s); storing its captures one by one",
                        len(group), type(exc).__name__)
            await self._one_by_one(group)
            return
        except BaseException as exc:  # cancelled (shutdown) before the commit: store them one by one
            if self._answered(group):
                raise
            if not committing:
                await self._one_by_one(group)
                return
            for w in group:
                _settle(w.answer, exc=exc)
            raise

    @staticmethod
    def _answered(group: list[_Waiting]) -> bool:
        return all(w.answer.done() and not w.answer.cancelled() for w in group)

    def _committed(self, group: list[_Waiting], results: list[CaptureResult]) -> None:
        self.groups_committed += 1
        self.largest_group = max(self.largest_group, len(group))
        for w, result in zip(group, results, strict=False):
            _settle(w.answer, result=result)

    async def _one_by_one(self, group: list[_Waiting]) -> None:
        async def one(w: _Waiting) -> None:
            m = w.member
            try:
                with resumed(m.trace):  # its event's row carries the request's trace
                    result = await capture_in_transaction(
                        self._transaction, m.profile, now=m.now, repeat_window=m.repeat_window,
                        dedupe_scope=m.dedupe_scope, dedupe_key=m.dedupe_key, activity_kind=m.activity_kind)
            except Exception as exc:
                _settle(w.answer, exc=exc)
            else:
                _settle(w.answer, result=result)

        await asyncio.gather(*(one(w) for w in group))


def _settle(answer: asyncio.Future[CaptureResult], *, result: CaptureResult | None = None,
            exc: BaseException | None = None) -> None:
    if answer.done():
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)  # type: ignore[arg-type]
