"""Insights' Prometheus metrics (no per-lead labels)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_PROJECTED = Counter("leadbridge_insights_events_projected_total",
                           "Events added to lead timelines and the funnel projection", ["event_type"])
