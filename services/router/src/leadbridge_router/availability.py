"""Can a rep take a lead right now? Active, not out of office, on shift, under caps. Clock passed in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .roster import WEEKDAYS, Rep, parse_span


def _local(rep: Rep, now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(rep.zone)


def is_out_of_office(rep: Rep, now: datetime) -> bool:
    if not rep.out_of_office:
        return False
    local = _local(rep, now)
    for ooo in rep.out_of_office:
        if isinstance(ooo.start, datetime):
            if ooo.start <= now < ooo.end:
                return True
        elif ooo.start <= local.date() <= ooo.end:
            return True
    return False


def is_on_shift(rep: Rep, now: datetime) -> bool:
    if rep.working_hours is None:
        return True
    local = _local(rep, now)
    spans = rep.working_hours.get(WEEKDAYS[local.weekday()], [])
    t = local.time().replace(tzinfo=None)
    return any(start <= t < end for start, end in map(parse_span, spans))


def next_shift_start(rep: Rep, now: datetime, horizon_days: int = 14) -> datetime | None:
    """The first moment after ``now`` when the rep is on shift and not out of office (None: not soon)."""
    for moment in sorted(_candidate_starts(rep, now, horizon_days)):
        if moment > now and is_on_shift(rep, moment) and not is_out_of_office(rep, moment):
            return moment
    return None


def _candidate_starts(rep: Rep, now: datetime, horizon_days: int) -> list[datetime]:
    moments = [o.end for o in rep.out_of_office if isinstance(o.end, datetime)]
    if rep.working_hours is None:
        today = _local(rep, now).date()
        moments += [datetime.combine(today + timedelta(days=d), datetime.min.time(), tzinfo=rep.zone)
                    for d in range(1, horizon_days + 1)]
    else:
        moments += list(_shift_starts(rep, now, horizon_days))
    return [m.astimezone(now.tzinfo) for m in moments]


def _shift_starts(rep: Rep, now: datetime, horizon_days: int) -> Iterable[datetime]:
    assert rep.working_hours is not None
    today = _local(rep, now).date()
    for d in range(horizon_days + 1):
        day = today + timedelta(days=d)
        for span in sorted(rep.working_hours.get(WEEKDAYS[day.weekday()], [])):
            start, _ = parse_span(span)
            # wall-clock start in the rep's zone; zoneinfo resolves the UTC offset (DST included)
            local = datetime.combine(day, start, tzinfo=rep.zone)
            if _roundtrips(local):
                yield local.astimezone(now.tzinfo)
            else:  # the start falls in a spring-forward gap: the shift starts when clocks jump
                yield (local + timedelta(hours=1)).replace(minute=0).astimezone(now.tzinfo)


def _roundtrips(local: datetime) -> bool:
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == local.replace(tzinfo=None)


def local_day(rep: Rep, moment: datetime) -> date:
    return _local(rep, moment).date()


def _local_midnight(rep: Rep, day: date) -> datetime:
    # in UTC: comparing datetimes that share one tzinfo is far cheaper than across zones
    return datetime.combine(day, datetime.min.time(), tzinfo=rep.zone).astimezone(UTC)


@dataclass(frozen=True)
class RepLoad:
    """What the caps look at for one rep.

    ``assigned_at``: when each lead the rep got recently was assigned, open or already closed (won, lost,
    back to nurture) -- the daily/weekly caps limit NEW leads per local day/week, and a lead the rep worked
    still used up that day's slot. Leads taken away from the rep (escalation, deactivation) are not in it.
    ``open_count``: the rep's currently open routed leads, whenever assigned -- what ``max_open`` limits.
    """

    assigned_at: tuple[datetime, ...] = ()
    open_count: int = 0


def as_load(load: RepLoad | Iterable[datetime]) -> RepLoad:
    """A plain list of datetimes means: these leads are all still open (assigned at those times)."""
    if isinstance(load, RepLoad):
        return load
    stamps = tuple(load)
    return RepLoad(assigned_at=stamps, open_count=len(stamps))


def cap_usage(rep: Rep, assigned_at: Iterable[datetime], now: datetime) -> tuple[int, int]:
    """(today, this week) counts of leads assigned to the rep (and not taken away), by the rep's local
    calendar (weeks start on Monday). Days are local midnight to local midnight, so a daylight-saving day is 23 or 25 hours."""
    today = local_day(rep, now)
    day_start = _local_midnight(rep, today)
    week_start = _local_midnight(rep, today - timedelta(days=today.weekday()))
    day_end = _local_midnight(rep, today + timedelta(days=1))
    daily = weekly = 0
    for at in assigned_at:
        if week_start <= at < day_end:
            weekly += 1
            if at >= day_start:
                daily += 1
    return daily, weekly


def unavailable_reason(rep: Rep, load: RepLoad | Iterable[datetime], now: datetime, *,
                       check_shift: bool = True) -> str | None:
    """Why the rep cannot take a lead at ``now`` (None: they can)."""
    load = as_load(load)
    if not rep.active:
        return "inactive"
    if rep.weight <= 0:
        return "weight 0"
    if is_out_of_office(rep, now):
        return "out of office"
    if rep.max_open is not None and load.open_count >= rep.max_open:
        return f"at max open leads ({load.open_count}/{rep.max_open})"
    if rep.daily_cap is None and rep.weekly_cap is None:
        return "off shift" if check_shift and not is_on_shift(rep, now) else None
    daily, weekly = cap_usage(rep, load.assigned_at, now)
    if rep.daily_cap is not None and daily >= rep.daily_cap:
        return f"at daily cap ({daily}/{rep.daily_cap})"
    if rep.weekly_cap is not None and weekly >= rep.weekly_cap:
        return f"at weekly cap ({weekly}/{rep.weekly_cap})"
    if check_shift and not is_on_shift(rep, now):
        return "off shift"
    return None
