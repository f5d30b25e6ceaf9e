"""Offset commits off the consumer's critical path (issue 16: a lead must not wait for the previous fetch's commit).

The runner records, per partition, the next offset to commit once a record's (or a batch's) transaction has
committed; ``CommitBehind`` commits those in a task of its own while the runner goes on to the next fetch.
It changes when an offset is committed, never which: only offsets of committed transactions are ever pending,
so an offset commit still means the write is durable. At most one commit is in flight (so they reach the
coordinator in order); one that finds more offsets pending when it is done commits them too, but not sooner
than ``interval`` seconds after the previous one (``CONSUMER_COMMIT_INTERVAL_MS``): at 200 leads/s a fetch
holds a record or two, and an offset commit per fetch was ~5% of each consumer's CPU (a broker request, and
the broker's own write). The first commit after a quiet spell goes at once. A failed commit is raised on the
runner's next ``kick()``, as an awaited commit would have raised it. ``landed()`` (a revoke, the runner's
close) skips the interval and waits for the commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("leadbridge.consumer")


class CommitBehind:
    def __init__(self, commit: Callable[[], Awaitable[None]], pending: Mapping[Any, int], name: str, *,
                 interval: float = 0.0) -> None:
        self._commit = commit  # commits what is pending and forgets what it committed (``ConsumerRunner``)
        self._pending = pending  # the runner's dict: read here, never written
        self._name = name
        self._interval = max(0.0, interval)
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by ``landed``: no more waiting for the interval
        self._last = float("-inf")  # monotonic time of the last commit's start

    def kick(self) -> None:
        """Start committing what is pending, unless a commit is in flight (it takes the new offsets when done);
        raise the failure of the last commit, if it failed."""
        task = self._task
        if task is not None:
            if not task.done():
                return
            self._task = None
            task.result()
        if self._pending:
            self._task = asyncio.create_task(self._commit_while_pending(), name=f"offsets-{self._name}")

    async def _commit_while_pending(self) -> None:
        while True:
            wait = self._last + self._interval - time.monotonic()
            if wait > 0 and not self._hurry.is_set():
                try:
                    async with asyncio.timeout(wait):
                        await self._hurry.wait()
                except TimeoutError:
                    pass
            before = dict(self._pending)
            if not before:
                return
            self._last = time.monotonic()
            await self._commit()
            if not self._pending or self._pending == before:  # nothing new (or only revoked partitions left)
                return

    async def landed(self) -> None:
        """Wait for the commit in flight, if any, without its interval; its failure is logged (the caller commits
        again or gives up)."""
        task, self._task = self._task, None
        if task is not None:
            self._hurry.set()
            try:
                await asyncio.shield(task)
            except Exception as exc:
                log.warning("offset commit failed: %s", exc, extra={"group": self._name})
            finally:
                self._hurry.clear()
