"""Delivery rules, pure (no I/O; ``now`` and the random source are passed in).

- ``Outcome``: what one attempt to a destination came to. ``endpoint_down`` failures (connection refused,
  timeout, 5xx, 429, auth) say the endpoint is unwell: the whole endpoint waits for the next probe instead of
  hammering it with every queued lead. Record-level failures (a 4xx about this payload) only retry or
  dead-letter that delivery.
- ``next_attempt_at``: the retry schedule with jitter, honouring ``Retry-After`` (capped).
- ``TokenBucket``: the per-portal rate limit (HubSpot private apps: 100 requests per 10 s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

DELIVERED, FAILED, DEAD, SKIPPED = "delivered", "failed", "dead", "skipped"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None   # seconds the endpoint asked us to wait
    endpoint_down: bool = False        # the endpoint, not this payload, is the problem
    permanent: bool = False            # retrying cannot help: dead-letter now
    skipped: bool = False              # nothing to deliver (e.g. a HubSpot contact needs an email)
    record_id: str | None = None       # the CRM's id of the contact / Lead
    owner_id: str | None = None

    @classmethod
    def delivered(cls, status_code: int, record_id: str | None = None, owner_id: str | None = None) -> Outcome:
        return cls(ok=True, status_code=status_code, record_id=record_id, owner_id=owner_id)

    @classmethod
    def unreachable(cls, error: str) -> Outcome:
        return cls(ok=False, error=error, endpoint_down=True)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def http_outcome(status: int, retry_after: str | None, now: datetime, *, error: str | None = None,
                 record_level_4xx: bool = True) -> Outcome:
    """A non-2xx HTTP answer as an Outcome. 408/429/5xx/401/403: the endpoint; other 4xx: this record."""
    wait = parse_retry_after(retry_after, now)
    text = error or f"HTTP {status}"
    if status in (408, 429) or status >= 500 or status in (401, 403):
        return Outcome(ok=False, status_code=status, error=text, retry_after=wait, endpoint_down=True)
    return Outcome(ok=False, status_code=status, error=text, retry_after=wait, endpoint_down=not record_level_4xx)


def next_attempt_at(attempts_made: int, schedule: tuple[float, ...], now: datetime, *, jitter: float,
                    rng: random.Random, retry_after: float | None = None,
                    max_retry_after: float = 3600.0) -> datetime | None:
    """When to try again after ``attempts_made`` attempts (None: the schedule is used up -> dead letter).

    The wait is the schedule's step times a random factor in [1 - jitter, 1 + jitter] (so a thousand
    deliveries failing together do not come back together), and never shorter than ``Retry-After``.
    """
    if attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    wait = base * (1 + rng.uniform(-jitter, jitter)) if jitter else base
    if retry_after is not None:
        wait = max(wait, min(retry_after, max_retry_after))
    return now + timedelta(seconds=wait)


def should_pause(failing_since: datetime | None, now: datetime, pause_after: float) -> bool:
    return failing_since is not None and (now - failing_since).total_seconds() >= pause_after


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``take`` says how long to wait for one (0: go now)."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token (going into debt if need be); returns the seconds to wait before using it."""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def drain(self, now: float, seconds: float) -> None:
        """The server said slow down (429): no tokens for ``seconds``."""
        self._refill(now)
        self.tokens = min(self.tokens, -seconds * self.rate)
