"""The retrying platform fetcher: Meta and LinkedIn notify only a lead id; the lead's data is fetched.

A notification is stored in ``pending_fetches`` (in the webhook's transaction) before the webhook answers.
This loop claims due rows one at a time, each in a transaction of its own (``FOR UPDATE SKIP LOCKED``, so
replicas share the work), fetches, and captures the lead in the same transaction that marks the row done.
A failed fetch -- or any failure handling a row -- is kept with its error and retried with exponential
backoff, without limit, while the rows behind it go on: never dropped, never blocking the others. Data the
platform delivered that cannot become a lead (mapping or validation fails) is quarantined with its raw
payload (``quarantine``), never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from leadbridge_events.failures import describe, is_transient
from leadbridge_events.transaction import Transaction, Transactions
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics
from .capture import CaptureResult, capture_lead
from .mapping import PLATFORMS, linkedin_form_id
from .quarantine import Unusable, count_open, quarantine, validated
from .reporting import record_result
from .settings import IntakeSettings
from .tables import pending_fetches

log = logging.getLogger("leadbridge.intake.fetcher")


class FetchFailed(Exception):
    pass


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Exponential: base, 2*base, 4*base, ... capped."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


async def enqueue_fetch(session: AsyncSession, platform: str, platform_lead_id: str,
                        notification: dict[str, Any]) -> bool:
    """Store a lead to fetch, in the caller's transaction; False if this platform id is known already."""
    stmt = (insert(pending_fetches).values(platform=platform, platform_lead_id=platform_lead_id,
                                           notification=notification, attempts=0)
            .on_conflict_do_nothing().returning(pending_fetches.c.platform_lead_id))
    return (await session.execute(stmt)).scalar() is not None


class PlatformFetcher:
    def __init__(self, settings: IntakeSettings, transaction: Transactions, clock: Callable[[], datetime],
                 client: httpx.AsyncClient | None = None) -> None:
        """``transaction``: the runtime's (``ServiceRuntime.transaction``); each row is handled in one."""
        self.settings = settings
        self.transaction = transaction
        self.clock = clock
        self.client = client or httpx.AsyncClient(timeout=settings.fetch_timeout_seconds)
        self._wake = asyncio.Event()
        self._linkedin_forms: dict[str, dict[str, Any]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.process_due() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # database away: try again later, rows are safe in the table
                log.exception("platform fetcher pass failed; retrying")
            self._wake.clear()
            try:  # asyncio.timeout: unlike wait_for on 3.11, it never swallows the shutdown's cancellation
                async with asyncio.timeout(self.settings.fetch_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.client.aclose()

    async def process_due(self, limit: int = 10) -> int:
        """Fetch and capture up to ``limit`` due leads, one transaction each; returns how many were handled."""
        handled = 0
        while handled < limit and await self._process_one():
            handled += 1
        await self.refresh_gauges()
        return handled

    async def refresh_gauges(self) -> None:
        pf = pending_fetches
        async with self.transaction() as tx:
            session = tx.session
            pending = dict((await session.execute(select(pf.c.platform, func.count()).where(pf.c.done_at.is_(None))
                                                  .group_by(pf.c.platform))).all())
            quarantined = await count_open(session)
        for platform in ("meta", "linkedin"):
            metrics.FETCH_PENDING.labels(platform).set(pending.get(platform, 0))
        for platform in PLATFORMS:
            metrics.QUARANTINE_OPEN.labels(platform).set(quarantined.get(platform, 0))

    async def _process_one(self) -> bool:
        """Claim and handle one due row in its own transaction; False when none is due. A failure while
        handling it is recorded on the row (retried later) in a transaction of its own, so the next row goes
        on; if that fails too (the database is away) the error propagates and the loop waits."""
        pf = pending_fetches
        row: dict[str, Any] | None = None
        try:
            async with self.transaction() as tx:
                found = (await tx.session.execute(
                    select(pf).where(pf.c.done_at.is_(None), pf.c.next_attempt_at <= func.now())
                    .order_by(pf.c.next_attempt_at).limit(1).with_for_update(skip_locked=True))).mappings().first()
                if found is None:
                    return False
                row = dict(found)
                await self._handle(tx, row)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if row is None or is_transient(exc):
                raise  # the database (or the broker) is away: the loop waits, the row keeps its attempts
            log.exception("handling a platform lead failed; kept for a retry",
                          extra={"platform": row["platform"], "platform_lead_id": row["platform_lead_id"]})
            async with self.transaction() as tx:
                await self._retry_later(tx.session, row, exc, error=describe(exc))
            return True

    async def _retry_later(self, session: AsyncSession, row: dict[str, Any], exc: BaseException, *,
                           error: str | None = None) -> None:
        """Keep the row for a retry with backoff; ``error`` (default: the exception's text) is stored."""
        platform, pid = row["platform"], row["platform_lead_id"]
        attempts = row["attempts"] + 1
        wait = backoff_seconds(attempts, self.settings.fetch_retry_base_seconds, self.settings.fetch_retry_max_seconds)
        await session.execute(update(pending_fetches).where(
            pending_fetches.c.platform == platform, pending_fetches.c.platform_lead_id == pid).values(
            attempts=attempts, last_error=(error or f"{type(exc).__name__}: {exc}")[:1000],
            next_attempt_at=self.clock() + timedelta(seconds=wait)))
        metrics.FETCH_ATTEMPTS.labels(platform, "failed").inc()
        log.warning("platform fetch failed; retry in %.1fs", wait,
                    extra={"platform": platform, "platform_lead_id": pid, "attempts": attempts})

    async def _handle(self, tx: Transaction, row: dict[str, Any]) -> None:
        session = tx.session
        platform, pid = row["platform"], row["platform_lead_id"]
        where = (pending_fetches.c.platform == platform, pending_fetches.c.platform_lead_id == pid)
        now = self.clock()
        try:
            raw = await self.fetch(platform, pid)
        except Exception as exc:  # noqa: BLE001 - any failure is retried
            await self._retry_later(session, row, exc)
            return
        try:
            submission, is_test = validated(platform, raw, region=self.settings.default_phone_region)
        except Unusable as problem:  # the platform's data cannot become a lead as it is: keep it, with why
            quarantine_id, _ = await quarantine(session, platform, pid, raw, problem)
            await session.execute(update(pending_fetches).where(*where).values(
                attempts=row["attempts"] + 1, done_at=now,
                last_error=f"quarantined ({problem.reason}) as {quarantine_id}"))
            metrics.FETCH_ATTEMPTS.labels(platform, "quarantined").inc()
            return
        async with session.begin_nested():
            result: CaptureResult = await capture_lead(
                tx, submission.profile(source=platform, is_test=is_test), now=now,
                repeat_window=timedelta(hours=self.settings.repeat_window_hours),
                dedupe_scope=platform, dedupe_key=pid, activity_kind="form_submission")
            await session.execute(update(pending_fetches).where(*where).values(
                attempts=row["attempts"] + 1, done_at=now, lead_id=result.lead_id, last_error=None))
        metrics.FETCH_ATTEMPTS.labels(platform, "ok").inc()
        record_result(result, source=platform, channel=submission.channel, dedupe_kind=f"{platform}_id")

    async def fetch(self, platform: str, platform_lead_id: str) -> dict[str, Any]:
        """The platform's lead payload, as ``mapping.map_platform_lead`` reads it (and quarantine keeps it)."""
        if platform == "meta":
            # the token in a header, never the URL: URLs end up in access logs (the Graph API accepts both)
            return await self._get(f"{self.settings.meta_graph_base_url.rstrip('/')}/{quote(platform_lead_id)}",
                                   headers={"Authorization": f"Bearer {self.settings.meta_access_token}"})
        if platform == "linkedin":
            base = self.settings.linkedin_api_base_url.rstrip("/")
            headers = {"Authorization": f"Bearer {self.settings.linkedin_access_token}",
                       "X-Restli-Protocol-Version": "2.0.0"}
            response = await self._get(f"{base}/leadFormResponses/{quote(platform_lead_id, safe='')}",
                                       headers=headers)
            form_id = linkedin_form_id(response)
            form = None
            if form_id:
                form = self._linkedin_forms.get(form_id)
                if form is None:
                    form = self._linkedin_forms[form_id] = await self._get(f"{base}/leadForms/{quote(form_id)}",
                                                                           headers=headers)
            return {"response": response, "form": form}
        raise FetchFailed(f"unknown platform {platform}")

    async def _get(self, url: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.client.get(url, **kwargs)
        if response.status_code != 200:
            raise FetchFailed(f"HTTP {response.status_code} from {url.split('?')[0]}")
        data = response.json()
        if not isinstance(data, dict):
            raise FetchFailed("the platform answered with something that is not a JSON object")
        return data
