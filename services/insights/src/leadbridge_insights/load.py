"""Rep load: who is drowning. Pure: the announced roster, counts from the read model, and ``now``.

Per rep: open leads against ``max_open``, new leads this (local, Monday-start) week against ``weekly_cap``,
availability now (inactive, out of office, off shift, on shift) from the shifts and absences the router
announced (``roster-changed``), and breaches this week. Per pool: the capacity waiting list and the
overflows this week. Reps with leads but missing from the roster are listed with unknown caps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _span(span: str) -> tuple[time, time] | None:
    m = _SPAN.match(span.strip())
    if not m:
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return time(h1, m1), (time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2))


def _out_of_office(rep: Mapping[str, Any], now: datetime, local: datetime) -> bool:
    for ooo in rep.get("out_of_office") or []:
        start, end = str(ooo.get("start") or ""), str(ooo.get("end") or "")
        if len(start) == 10 and len(end) == 10:
            if date.fromisoformat(start) <= local.date() <= date.fromisoformat(end):
                return True
        elif start and end and datetime.fromisoformat(start) <= now < datetime.fromisoformat(end):
            return True
    return False


def availability(rep: Mapping[str, Any], now: datetime) -> str:
    """inactive | out of office | off shift | on shift (the router's own order of checks)."""
    if not rep.get("active", True):
        return "inactive"
    local = now.astimezone(_zone(rep.get("timezone")))
    if _out_of_office(rep, now, local):
        return "out of office"
    hours = rep.get("working_hours")
    if hours is None:
        return "on shift"
    t = local.time().replace(tzinfo=None)
    spans = [s for s in map(_span, hours.get(WEEKDAYS[local.weekday()], [])) if s]
    return "on shift" if any(a <= t < b for a, b in spans) else "off shift"


def week_start(zone_name: str | None, now: datetime) -> datetime:
    """The start of the local week (Monday 00:00 in the rep's zone), in UTC."""
    zone = _zone(zone_name)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    return datetime.combine(monday, time(), tzinfo=zone).astimezone(UTC)


def earliest_week_start(roster: Mapping[str, Any] | None, now: datetime) -> datetime:
    """The earliest local week start of any rep (UTC's if no roster): where the weekly counts must begin."""
    zones = {r.get("timezone") for r in (roster or {}).get("reps", [])} | {"UTC"}
    return min(week_start(z, now) for z in zones)


def _since(hourly: Iterable[tuple[datetime, int]], start: datetime) -> int:
    return sum(n for at, n in hourly if at >= start)


def _ratio(n: int, cap: int | None) -> float | None:
    return round(n / cap, 4) if cap else None


def rep_load(roster: Mapping[str, Any] | None, *, open_by_rep: Mapping[str, int],
             assigned_hourly: Mapping[str, list[tuple[datetime, int]]],
             breaches_hourly: Mapping[str, list[tuple[datetime, int]]],
             names: Mapping[str, str | None], teams: Mapping[str, str | None], now: datetime) -> list[dict[str, Any]]:
    """One row per rep: most loaded first (open / max_open, then this week / weekly_cap, then open)."""
    reps = {r["id"]: r for r in (roster or {}).get("reps", [])}
    ids = set(reps) | set(open_by_rep) | set(assigned_hourly) | set(breaches_hourly)
    rows: list[dict[str, Any]] = []
    for rep_id in sorted(ids):
        rep = reps.get(rep_id)
        start = week_start(rep.get("timezone") if rep else "UTC", now)
        open_n = int(open_by_rep.get(rep_id, 0))
        week_n = _since(assigned_hourly.get(rep_id, []), start)
        max_open = rep.get("max_open") if rep else None
        weekly_cap = rep.get("weekly_cap") if rep else None
        rows.append({
            "rep": rep_id, "name": (rep or {}).get("name") or names.get(rep_id),
            "team": (rep or {}).get("team") or teams.get(rep_id),
            "open": open_n, "max_open": max_open, "open_ratio": _ratio(open_n, max_open),
            "week_new": week_n, "weekly_cap": weekly_cap, "week_ratio": _ratio(week_n, weekly_cap),
            "availability": availability(rep, now) if rep else "unknown",
            "timezone": (rep or {}).get("timezone"),
            "breaches_week": _since(breaches_hourly.get(rep_id, []), start),
            "at_capacity": bool((max_open is not None and open_n >= max_open)
                                or (weekly_cap is not None and week_n >= weekly_cap)),
        })
    rows.sort(key=lambda r: (-(r["open_ratio"] or 0), -(r["week_ratio"] or 0), -r["open"], r["rep"]))
    return rows


def pool_load(roster: Mapping[str, Any] | None, *, waiting: Mapping[str, tuple[int, datetime | None]],
              overflows: Mapping[str, Mapping[str, int]], now: datetime) -> list[dict[str, Any]]:
    """One row per pool: leads on its capacity waiting list (and the oldest's wait), overflows this week."""
    teams = {t["id"]: t for t in (roster or {}).get("teams", [])}
    rows = []
    for pool in sorted(set(teams) | set(waiting) | set(overflows)):
        count, oldest = waiting.get(pool, (0, None))
        by_outcome = dict(overflows.get(pool, {}))
        team = teams.get(pool, {})
        rows.append({"pool": pool, "name": team.get("name"), "overflow": team.get("overflow"),
                     "overflow_to": team.get("overflow_to"), "waiting": count,
                     "oldest_wait_seconds": (now - oldest).total_seconds() if oldest else None,
                     "overflows_week": sum(by_outcome.values()), "overflows_by_outcome": by_outcome})
    rows.sort(key=lambda r: (-r["waiting"], -r["overflows_week"], r["pool"]))
    return rows
