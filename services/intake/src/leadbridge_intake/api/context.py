"""What the HTTP handlers share: settings, the runtime (database, outbox), the limiter and the fetcher."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import Request
from leadbridge_events.runtime import ServiceRuntime

from ..keys import KeyCache
from ..ratelimit import RateLimiter
from ..settings import IntakeSettings

if TYPE_CHECKING:
    from ..fetcher import PlatformFetcher
    from ..group_commit import GroupCommitter


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class IntakeContext:
    settings: IntakeSettings
    runtime: ServiceRuntime
    limiter: RateLimiter
    fetcher: PlatformFetcher
    keys: KeyCache = field(default_factory=lambda: KeyCache(0))
    webhook_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(600, 100))
    clock: Callable[[], datetime] = field(default=_utcnow)
    monotonic: Callable[[], float] = field(default=time.monotonic)
    captures: GroupCommitter | None = None  # set at start-up; None: one transaction per capture


async def get_ctx(request: Request) -> IntakeContext:  # async: FastAPI runs a sync dependency in a thread
    return request.app.state.ctx  # type: ignore[no-any-return]
