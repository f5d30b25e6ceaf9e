"""Periodically refreshes the per-team gauges from the deadlines table (one aggregate query)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import metrics
from .tables import SCHEMA

log = logging.getLogger("leadbridge.sla_watcher.gauges")

_UNTOUCHED = text(f"""
SELECT coalesce(team, '') AS team, count(*) AS waiting, count(*) FILTER (WHERE due_at <= now()) AS past_due,
       extract(epoch FROM now() - min(starts_at)) AS oldest
FROM {SCHEMA}.deadlines WHERE kind = 'first_touch' AND status IN ('open', 'breached') GROUP BY team
""")
_AT_RISK = text(f"""
SELECT coalesce(team, '') AS team, count(*) AS n FROM {SCHEMA}.deadlines
WHERE status = 'open' AND at_risk_fired_at IS NOT NULL GROUP BY team
""")
_OPEN = text(f"SELECT count(*) FROM {SCHEMA}.deadlines WHERE status = 'open'")


async def refresh(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        untouched = (await conn.execute(_UNTOUCHED)).all()
        at_risk = (await conn.execute(_AT_RISK)).all()
        open_count = (await conn.execute(_OPEN)).scalar() or 0
    for gauge in (metrics.AWAITING_FIRST_TOUCH, metrics.PAST_DUE_FIRST_TOUCH, metrics.OLDEST_UNTOUCHED,
                  metrics.AT_RISK_OPEN):
        gauge.clear()  # teams with nothing waiting any more disappear
    for row in untouched:
        team = metrics.team_label(row.team)
        metrics.AWAITING_FIRST_TOUCH.labels(team).set(row.waiting)
        metrics.PAST_DUE_FIRST_TOUCH.labels(team).set(row.past_due)
        metrics.OLDEST_UNTOUCHED.labels(team).set(float(row.oldest or 0))
    for row in at_risk:
        metrics.AT_RISK_OPEN.labels(metrics.team_label(row.team)).set(row.n)
    metrics.OPEN_DEADLINES.set(open_count)


async def run(engine: AsyncEngine, every_seconds: float) -> None:
    while True:
        try:
            await refresh(engine)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - gauges are best effort; the timer is what matters
            log.warning("gauge refresh failed: %s", exc)
        await asyncio.sleep(every_seconds)
