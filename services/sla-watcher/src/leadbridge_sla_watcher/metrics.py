"""The watcher's Prometheus metrics. Labels are policy, team and kind only: never a lead id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BREACHES = Counter("leadbridge_sla_breaches_total", "SLA breaches emitted", ["policy", "team", "kind"])
AT_RISK = Counter("leadbridge_sla_at_risk_total", "SLA at-risk warnings emitted", ["policy", "team", "kind"])
TOUCHES_AFTER_BREACH = Counter(
    "leadbridge_sla_touches_after_breach_total",
    "Touches that arrived after the breach was emitted (when=in_time: it happened before the due time)",
    ["policy", "team", "when"],
)
AT_RISK_OPEN = Gauge("leadbridge_sla_at_risk_open", "Open deadlines past their at-risk point", ["team"])
AWAITING_FIRST_TOUCH = Gauge("leadbridge_sla_awaiting_first_touch", "Routed leads not touched yet", ["team"])
PAST_DUE_FIRST_TOUCH = Gauge(
    "leadbridge_sla_awaiting_first_touch_past_due", "Routed leads still untouched after their first-touch SLA",
    ["team"],
)
OLDEST_UNTOUCHED = Gauge(
    "leadbridge_sla_oldest_untouched_age_seconds", "Age of the oldest routed lead not touched yet", ["team"]
)
OPEN_DEADLINES = Gauge("leadbridge_sla_open_deadlines", "Deadlines the timer is watching")
TIME_TO_FIRST_TOUCH = Histogram(
    "leadbridge_sla_time_to_first_touch_seconds", "From routing to the first touch (wall clock)", ["team"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800),
)
FIRE_LAG = Histogram(
    "leadbridge_sla_fire_lag_seconds", "From a deadline's fire time to the commit of its event", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UNREADABLE = Counter("leadbridge_sla_unreadable_deadlines_total",
                     "Deadline rows the timer could not read: parked (status 'unreadable') and skipped", ["error"])
TIMER_ERRORS = Counter("leadbridge_sla_timer_errors_total", "Timer loop iterations that failed (retried)")


def team_label(team: str | None) -> str:
    return team or "none"
