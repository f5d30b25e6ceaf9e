"""When records appear on the pipeline's topics, read by a consumer (in a process of its own if need be).

- ``RecordTimes``: the first record per (topic, lead) on the given topics, its CreateTime and when this consumer
  saw it (epoch seconds, the machine's wall clock);
- ``RecordTimesProcess``: the same in a process of its own. The poster's event loop (httpx at 200 requests/s)
  is busy enough to delay its own consumer by hundreds of ms on a loaded machine, which a latency figure would
  then count as the pipeline's (``bench_latency.py``'s ``seen`` hop; ``make bench``'s capture->routed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from leadbridge_contracts.topics import LEAD_CAPTURED, LEAD_ROUTED, LEAD_SCORED

TOPICS = (LEAD_CAPTURED, LEAD_SCORED, LEAD_ROUTED)


class RecordTimes:
    """The first record per (topic, lead) on the given topics: its CreateTime, and when this consumer saw it."""

    def __init__(self, bootstrap: str, topics: tuple[Any, ...] = TOPICS) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self.stamp: dict[tuple[str, str], float] = {}
        self.seen: dict[tuple[str, str], float] = {}

    async def __aenter__(self) -> RecordTimes:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await self._consumer.start()
        parts = [TopicPartition(t.name, p) for t in self._topics for p in range(t.partitions)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=20, max_records=5000)
            now = time.time()
            for tp, records in batches.items():
                for r in records:
                    key = (tp.topic, r.key.decode() if r.key else "")
                    if key not in self.stamp:
                        self.stamp[key] = r.timestamp / 1000
                        self.seen[key] = now


class RecordTimesProcess:
    """``RecordTimes`` in a process of its own: the poster's event loop (httpx at 200 requests/s) is busy enough
    to delay its own consumer by hundreds of ms on a loaded machine, which the ``seen`` hop then counted as the
    pipeline's. Same interface for ``measure``: ``stamp``, ``seen`` and ``wait_routed(leads, timeout)``."""

    def __init__(self, bootstrap: str, topics: tuple[Any, ...] = TOPICS) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")
        self._bootstrap = bootstrap
        self._topics = topics
        self.stamp: dict[tuple[str, str], float] = {}
        self.seen: dict[tuple[str, str], float] = {}

    async def __aenter__(self) -> RecordTimesProcess:
        self._parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_record_times_child, args=(self._bootstrap, self._topics, child), daemon=True
        )
        self._proc.start()
        await asyncio.to_thread(self._parent.recv)  # "ready": positioned at the end of every partition
        return self

    async def wait_routed(self, leads: list[str], timeout: float) -> None:
        self._parent.send((leads, timeout))
        self.stamp, self.seen = await asyncio.to_thread(self._parent.recv)

    async def __aexit__(self, *exc: object) -> None:
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def _record_times_child(bootstrap: str, topics: tuple[Any, ...], conn: Any) -> None:
    async def main() -> None:
        async with RecordTimes(bootstrap, topics) as rec:
            conn.send("ready")
            leads, timeout = await asyncio.to_thread(conn.recv)
            deadline = time.time() + timeout
            while time.time() < deadline and sum(("lead-routed", lead) in rec.seen for lead in leads) < len(leads):
                await asyncio.sleep(0.1)
            conn.send((rec.stamp, rec.seen))

    asyncio.run(main())
