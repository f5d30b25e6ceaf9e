"""The express lane's pacing (see ``express``): its rate limit, and its place between the main runner's batches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .consumer import ConsumerRunner

__all__ = ["LOCK_WAIT_SECONDS", "Bucket", "ahead_of"]

LOCK_WAIT_SECONDS = 2.0  # the longest the lane waits for the main runner's batch in flight (``ahead_of``)


class Bucket:
    """A token bucket: ``rate`` per second, bursts of up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@contextlib.asynccontextmanager
async def ahead_of(runner: ConsumerRunner) -> AsyncIterator[None]:
    """Hold the main runner's lock (held for each of its batches): the express transaction runs between two
    batches, not interleaved with one. In the router it waits for the batch in flight anyway (the pools' row
    locks); elsewhere each of its round trips would wait behind the batch's CPU between two of its awaits (one
    event loop; tens of ms each, more on a loaded machine). At most ``LOCK_WAIT_SECONDS`` (a main runner
    retrying a failing record holds it between attempts), then without it; at most ``EXPRESS_MAX_PER_SECOND``
    such pauses of the main runner."""
    lock: asyncio.Lock = runner._lock
    try:
        async with asyncio.timeout(LOCK_WAIT_SECONDS):
            await lock.acquire()
    except TimeoutError:
        yield
        return
    try:
        yield
    finally:
        lock.release()
