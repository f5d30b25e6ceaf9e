"""Scoring's Prometheus metrics (no per-lead labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LEADS_SCORED = Counter("leadbridge_scoring_lead_scored_total", "lead-scored events emitted", ["stage"])
BECAME_MQL = Counter("leadbridge_scoring_became_mql_total", "Leads handed to sales as MQL")
RECYCLED = Counter("leadbridge_scoring_recycled_total", "Leads sent back to nurture by sales")
BECAME_SQL = Counter("leadbridge_scoring_became_sql_total", "Leads qualified by sales (SQL)")
SCORES = Histogram("leadbridge_scoring_score", "Lead scores at emission",
                   buckets=(-50, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 150))
