"""Steady load on intake, retried the way a real platform retries: through 503s, 5xx and dropped connections.

Each lead is posted once at its scheduled time (``rate`` per second) with its own Idempotency-Key; a 5xx
(503 with Retry-After while a dependency is down) or a connection error is retried with the same key until
a 2xx, so a retry of a request whose answer was lost returns the same lead. Only 2xx count as accepted;
every failed attempt is recorded with its time and kind, to be counted per fault window.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

MQL, NURTURE = "mql", "nurture"


def lead_kind(i: int) -> str:
    """Four in five leads are sales-ready for the chaos roster, one in five goes to nurture."""
    return NURTURE if i % 5 == 4 else MQL


def lead_body(i: int, run: str) -> dict[str, Any]:
    tag = f"{run}-{i}"
    if lead_kind(i) == NURTURE:
        return {"email": f"student.{tag}@gmail.com", "name": "Sam Student", "job_title": "Student",
                "country": "US", "channel": "seo", "campaign": "chaos-blog", "form_type": "whitepaper_download",
                "consent": True}
    return {"email": f"vp-{tag}@company-{tag}.example", "company": f"Company {tag}", "job_title": "VP Sales",
            "company_size": 500, "industry": "software", "country": "DE", "language": "en", "channel": "paid",
            "campaign": f"chaos-{i % 5}", "form_type": "demo_request", "consent": True}


@dataclass
class Accepted:
    lead_id: str
    kind: str
    posted_at: float  # epoch seconds of the first attempt
    accepted_at: float  # epoch seconds of the 2xx


@dataclass
class ClientError:
    at: float
    kind: str  # "503", "500", "conn", "timeout", ...


@dataclass
class LoadResult:
    accepted: dict[str, Accepted] = field(default_factory=dict)
    errors: list[ClientError] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # 4xx answers (the load never sends bad input)
    gave_up: int = 0
    posted: int = 0
    started: float = 0.0
    finished: float = 0.0


def _retry_after(resp: httpx.Response, fallback: float) -> float:
    try:
        return min(float(resp.headers.get("retry-after", fallback)), 5.0)
    except ValueError:
        return fallback


async def post_one(client: httpx.AsyncClient, gate: asyncio.Semaphore, i: int, run: str, result: LoadResult,
                   give_up_after: float) -> None:
    body, key = lead_body(i, run), f"chaos-{run}-{i}"
    first = 0.0  # the first attempt's send time (waiting for a free sender does not count)
    backoff = 0.2
    while True:
        try:
            async with gate:  # a bounded number of requests in flight, as a platform's sender would have
                first = first or time.time()
                resp = await client.post("/v1/leads", json=body, headers={"Idempotency-Key": key})
        except httpx.TimeoutException:
            result.errors.append(ClientError(time.time(), "timeout"))
            wait = backoff
        except httpx.TransportError:
            result.errors.append(ClientError(time.time(), "conn"))
            wait = backoff
        else:
            if 200 <= resp.status_code < 300:
                lead_id = resp.json()["lead_id"]
                result.accepted[lead_id] = Accepted(lead_id, lead_kind(i), first, time.time())
                return
            if resp.status_code < 500 and resp.status_code != 429:
                result.rejected.append(f"lead {i}: HTTP {resp.status_code} {resp.text[:200]}")
                return
            result.errors.append(ClientError(time.time(), str(resp.status_code)))
            wait = _retry_after(resp, backoff)
        if time.time() - first > give_up_after:
            result.gave_up += 1
            return
        await asyncio.sleep(wait * random.uniform(0.8, 1.2))
        backoff = min(backoff * 2, 5.0)


async def create_api_key(url: str, admin_token: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        resp = await client.post("/v1/admin/keys", headers={"Authorization": f"Bearer {admin_token}"},
                                 json={"source": "chaos", "scopes": ["leads:write", "leads:read"]})
        resp.raise_for_status()
        key: str = resp.json()["api_key"]
        return key


async def post_leads(url: str, api_key: str, *, leads: int, rate: float, give_up_after: float = 600.0,
                     in_flight: int = 32, more: Callable[[], bool] = lambda: False,
                     progress: Callable[[int], object] = lambda i: None) -> LoadResult:
    """Post ``leads`` leads at ``rate`` per second, each retried until accepted (or ``give_up_after``), and
    more at the same rate for as long as ``more()`` says so (every fault must strike under load)."""
    run = uuid.uuid4().hex[:8]
    result = LoadResult(started=time.time())
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": api_key}, limits=limits,
                                 timeout=httpx.Timeout(10.0, connect=3.0, pool=None)) as client:
        tasks = []
        start = time.monotonic()
        i = 0
        while i < leads or more():
            await asyncio.sleep(max(start + i / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(post_one(client, gate, i, run, result, give_up_after)))
            progress(i)
            i += 1
        result.posted = i
        await asyncio.gather(*tasks)
    result.finished = time.time()
    return result
