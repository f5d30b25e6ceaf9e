"""Business-hours arithmetic: add N working minutes to an instant, in a time zone with working days,
daily working windows and holidays. Pure: aware datetimes in, aware UTC datetimes out.

All arithmetic on elapsed time happens in UTC (Python subtracts two datetimes that share a tzinfo
naively, which would be wrong across a daylight-saving change); the time zone only decides where the
working windows start and end on each local date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

UTC = UTC
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_DAYS_SCANNED = 3 * 366  # a calendar with no working time at all must not loop forever


class NoWorkingTime(ValueError):
    """The calendar has no working minute in the next three years (e.g. no working days configured)."""


@dataclass(frozen=True)
class Calendar:
    """Working time of a team or assignee. ``windows`` are (start, end) minutes after local midnight;
    ``end`` may be 1440 (midnight at the end of the day)."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    working_days: frozenset[int] = frozenset(range(5))  # 0 = Monday
    windows: tuple[tuple[int, int], ...] = ((9 * 60, 17 * 60),)
    holidays: frozenset[date] = frozenset()

    @classmethod
    def of(cls, tz: str = "UTC", days: tuple[str, ...] | list[str] = WEEKDAYS[:5],
           hours: tuple[str, ...] | list[str] = ("09:00-17:00",), holidays: tuple[date, ...] | list[date] = ()
           ) -> Calendar:
        return cls(
            tz=ZoneInfo(tz),
            working_days=frozenset(WEEKDAYS.index(d.lower()[:3]) for d in days),
            windows=tuple(sorted(parse_window(h) for h in hours)),
            holidays=frozenset(holidays),
        )

    def with_tz(self, tz: str | None) -> Calendar:
        return self if not tz else Calendar(ZoneInfo(tz), self.working_days, self.windows, self.holidays)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and day not in self.holidays

    def windows_on(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working windows of a local date, as UTC instants (computed once per calendar and date: every
        deadline of a drain asks for the same few days)."""
        return _windows_on(self, day)

    def _instant(self, day: date, minute_of_day: int) -> datetime:
        local = datetime.combine(day, time()) + timedelta(minutes=minute_of_day)  # naive local wall time
        return local.replace(tzinfo=self.tz).astimezone(UTC)


@lru_cache(maxsize=16384)
def _windows_on(calendar: Calendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    if not calendar.is_working_day(day):
        return ()
    return tuple((calendar._instant(day, start), calendar._instant(day, end)) for start, end in calendar.windows)


def parse_window(text: str) -> tuple[int, int]:
    """'09:00-17:30' -> (540, 1050); the end may be '24:00'."""
    try:
        start_s, end_s = (part.strip() for part in text.split("-"))
        start, end = _minutes(start_s), _minutes(end_s)
    except ValueError as exc:
        raise ValueError(f"bad working window {text!r}: expected HH:MM-HH:MM") from exc
    if not 0 <= start < end <= 1440:
        raise ValueError(f"bad working window {text!r}: start must be before end, within one day")
    return start, end


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    h, m = int(hours), int(minutes)
    if not (0 <= m < 60 and 0 <= h <= 24) or (h == 24 and m):
        raise ValueError(hhmm)
    return h * 60 + m


def add_business_minutes(start: datetime, minutes: float, calendar: Calendar) -> datetime:
    """The instant when ``minutes`` working minutes have elapsed after ``start`` (UTC).

    Time outside working windows (nights, weekends, holidays) does not count. ``minutes == 0`` gives the
    next working instant at or after ``start``.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    cursor = start.astimezone(UTC)
    remaining = timedelta(minutes=minutes)
    day = cursor.astimezone(calendar.tz).date() - timedelta(days=1)  # a window may begin on the day before
    for _ in range(_MAX_DAYS_SCANNED):
        for w_start, w_end in calendar.windows_on(day):
            begin = max(w_start, cursor)
            if begin >= w_end:
                continue
            available = w_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
            cursor = w_end
        day += timedelta(days=1)
    raise NoWorkingTime("no working time in the calendar")


def business_minutes_between(start: datetime, end: datetime, calendar: Calendar) -> float:
    """Working minutes elapsed from ``start`` to ``end`` (0 if end <= start)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return 0.0
    total = timedelta(0)
    day = start.astimezone(calendar.tz).date() - timedelta(days=1)
    last = end.astimezone(calendar.tz).date()
    while day <= last:
        for w_start, w_end in calendar.windows_on(day):
            lo, hi = max(w_start, start), min(w_end, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 60


def add_wall_minutes(start: datetime, minutes: float) -> datetime:
    return start.astimezone(UTC) + timedelta(minutes=minutes)
