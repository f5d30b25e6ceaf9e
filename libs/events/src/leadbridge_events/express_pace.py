"""The express lane's pacing (see ``express``): its rate limit, its place between the main runner's batches, and its
pause while the main runner keeps up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiokafka.errors import IllegalStateError

if TYPE_CHECKING:
    from .consumer import ConsumerRunner
    from .express import ExpressLane

__all__ = ["BUDGET_WINDOW_SECONDS", "LOCK_WAIT_SECONDS", "WATCH_SECONDS", "Bucket", "TimeBudget", "ahead_of",
           "pause_while_main_keeps_up"]

log = logging.getLogger("leadbridge.express")

WATCH_SECONDS = 0.5  # how often the lane looks whether the main group fell behind (``pause_while_main_keeps_up``)
LOCK_WAIT_SECONDS = 2.0  # the longest the lane waits for the main runner's batch in flight (``ahead_of``)
BUDGET_WINDOW_SECONDS = 10.0  # ``TimeBudget``: the lane's share of the time, over this long


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


class TimeBudget:
    """At most ``share`` of the time spent holding the main runner (``ahead_of``), over ``window`` seconds.

    Each express transaction pauses the main runner for as long as it takes: on two shared cores 0.1-0.4 s, its
    every round trip waiting to be scheduled. Under sustained overload every new lead is fresh, and 50 such
    transactions a second cut the whole pipeline's throughput by a fifth in a probe (601 -> 475-489 leads/s;
    docs/backbone.md); a share of the time bounds that cost whatever a transaction takes. A transaction may
    overdraw it (it is spent after)."""

    def __init__(self, share: float, window: float = BUDGET_WINDOW_SECONDS) -> None:
        self._share = share
        self._cap = share * window
        self._left = self._cap
        self._at = time.monotonic()

    def available(self) -> bool:
        return self._earned() > 0

    def spend(self, seconds: float) -> None:
        self._left = self._earned() - seconds

    def _earned(self) -> float:
        now = time.monotonic()
        self._left = min(self._cap, self._left + (now - self._at) * self._share)
        self._at = now
        return self._left


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


def cap_main_batches(lane: ExpressLane, *, behind: bool) -> None:
    """While the main group is behind, its runner's transactions hold at most ``EXPRESS_MAIN_BATCH_SIZE`` records:
    a fresh lead the lane takes waits for the main runner's transaction in flight (``ahead_of``), and a drain's
    transactions of 500 records took 0.1-0.3 s each on two busy cores (a fresh lead waits at two stages). At 200,
    in 30,000-lead drains: fresh leads routed in 414-609 ms (median) instead of 872-961, the drain within 4%
    (docs/benchmarks.md, tenth round)."""
    runner = lane._runner()
    if runner is not None:
        runner.batch_cap = (lane.settings.main_batch_size or None) if behind else None


async def pause_while_main_keeps_up(lane: ExpressLane) -> None:
    """Fetch nothing while the main group keeps up (fewer than ``EXPRESS_MIN_LAG`` records between its committed
    offsets and the ends of the lane's partitions, all of them: one loop handles them all): nothing could be
    taken, and fetching every record a second time was a fetch request and a response per relayed batch (~7% of
    scoring's and the router's CPU at 200 leads/s). Looked at every ``WATCH_SECONDS``: once the main group falls
    behind, the partitions are fetched again from the main group's committed offset (or where the lane
    stopped, if later), so no record the main group has not handled yet is missed."""
    if lane.settings.min_lag == 0 and lane.settings.min_wait_seconds == 0:
        cap_main_batches(lane, behind=True)
        return  # always behind
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        with contextlib.suppress(IllegalStateError):  # rebalanced meanwhile: looked at again next time
            await _pause_or_resume(lane)

async def _pause_or_resume(lane: ExpressLane) -> None:
    assigned = set(lane._consumer.assignment())
    if not assigned or not await lane._refresh():
        return
    try:
        ends = await lane._consumer.end_offsets(list(assigned))
    except Exception as exc:  # noqa: BLE001 - the broker is away: leave things as they are
        log.debug("end offsets not readable: %s", exc)
        return
    lane._ends = dict(ends)
    paused = lane._consumer.paused()
    # one main runner handles every partition in one loop: behind on one, it is late on all (``_main_behind``)
    behind = sum(lane.left_to_main(ends).values()) >= max(lane.settings.min_lag, 1)
    cap_main_batches(lane, behind=behind)
    for tp in ends:
        if not behind and tp not in paused:
            lane._consumer.pause(tp)
        elif behind and tp in paused:
            lane._consumer.seek(tp, max(await lane._consumer.position(tp), lane._main_offsets.get(tp, 0)))
            lane._consumer.resume(tp)
