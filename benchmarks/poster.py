"""An open-loop poster of leads at a fixed rate, on plain asyncio streams (no HTTP client library).

``make bench``'s latency run and ``bench_latency.py`` post at 20 and 200 leads/s and time each lead from its
POST. With httpx the poster itself used 0.41 cores at 200 leads/s (2026-12-02): a fifth of the two cores the
services, PostgreSQL and the broker share. This one writes each request as bytes on a keep-alive connection
(a new one only when every open one has a request in flight: open-loop, a slow answer never delays the next
send) and reads the answer by its Content-Length; it prints its own CPU use like every load generator here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

Posted = dict[str, tuple[float, float]]  # lead id -> (sent, answered), epoch seconds


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def post_leads(url: str, api_key: str, rate: float, seconds: float,
                     body_of: Callable[[int], dict]) -> tuple[Posted, float]:
    """Post ``rate * seconds`` leads at ``rate``; returns the accepted ones (lead id -> sent, answered) and
    this process's CPU use meanwhile, in cores."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST /v1/leads HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {api_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    idle: list[_Connection] = []
    posted: Posted = {}

    async def post(i: int) -> None:
        body = json.dumps(body_of(i)).encode()
        sent = time.time()
        conn = idle.pop() if idle else _Connection(*await asyncio.open_connection(host, port))
        try:
            status, answer = await asyncio.wait_for(conn.post(head + str(len(body)).encode() + b"\r\n\r\n" + body), 30)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
            conn.close()
            return  # counted as not accepted
        idle.append(conn)
        if status == 202:
            posted[json.loads(answer)["lead_id"]] = (sent, time.time())

    cpu_before = time.process_time()
    started = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(started + i / rate - time.perf_counter(), 0))
        tasks.append(asyncio.create_task(post(i)))
    await asyncio.gather(*tasks)
    cores = (time.process_time() - cpu_before) / (time.perf_counter() - started)
    for conn in idle:
        conn.close()
    return posted, cores
