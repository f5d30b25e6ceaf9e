"""Offset commits off the consumer's critical path (issue 16: a lead must not wait for the previous fetch's commit).

The runner records, per partition, the next offset to commit once a record's (or a batch's) transaction has
committed; ``CommitBehind`` commits those in a task of its own while the runner goes on to the next fetch.
It changes when an offset is committed, never which: only offsets of committed transactions are ever pending,
so an offset commit still means the write is durable. At most one commit is in flight (so they reach the
coordinator in order); one that finds more offsets pending when it is done commits them too. A failed commit
is raised on the runner's next ``kick()``, as an awaited commit would have raised it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("leadbridge.consumer")


class CommitBehind:
    def __init__(self, commit: Callable[[], Awaitable[None]], pending: Mapping[Any, int], name: str) -> None:
        self._commit = commit  # commits what is pending and forgets what it committed (``ConsumerRunner``)
        self._pending = pending  # the runner's dict: read here, never written
        self._name = name
        self._task: asyncio.Task[None] | None = None

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
            before = dict(self._pending)
            await self._commit()
            if not self._pending or self._pending == before:  # nothing new (or only revoked partitions left)
                return

    async def landed(self) -> None:
        """Wait for the commit in flight, if any; its failure is logged (the caller commits again or gives up)."""
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.shield(task)
            except Exception as exc:
                log.warning("offset commit failed: %s", exc, extra={"group": self._name})
