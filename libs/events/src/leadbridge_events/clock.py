"""The one clock type: a service's composition root picks the clock, handlers read it from ``ctx.now()``.

Domain code never calls this: it takes ``now`` as an argument. Tests pass a fixed or stepping clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)
