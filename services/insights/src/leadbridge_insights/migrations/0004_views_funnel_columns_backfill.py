"""lead_views gets the closed-loop funnel's columns (mql, nurtured, sla_at_risk, touches), the speed
histogram's bucket indexes, and partial covering indexes on the two durations and on the closed leads'
reasons, so ``/v1/funnel`` and ``/v1/views/speed`` aggregate in SQL; then every lead in lead_facts gets
its lead_views row (re)computed from its facts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:00:00

The backfill: leads projected before 0003 had no lead_views row (so no search, no views) until their next
event; rows written by 0003 lack the new columns. Both are rebuilt here from the facts (``views_backfill``),
in batches, keeping any contact already stored. Idempotent: running it again writes the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

S = 'insights'
FILTERED_BY = ("is_test", "cohort_at", "channel", "campaign", "source", "team", "rep")


def upgrade() -> None:
    for name in ("touch_bucket", "route_bucket"):
        op.add_column("lead_views", sa.Column(name, sa.SmallInteger()), schema=S)
    for name in ("mql", "nurtured", "sla_at_risk"):
        op.add_column("lead_views", sa.Column(name, sa.Boolean()), schema=S)
    op.add_column("lead_views", sa.Column("touches", sa.Integer()), schema=S)
    for name in ("touch_secs", "route_secs"):  # the speed view's percentiles, by index-only scans
        op.create_index(f"ix_insights_lead_views_{name}", "lead_views", [name], schema=S,
                        postgresql_include=list(FILTERED_BY), postgresql_where=sa.text(f"{name} IS NOT NULL"))
    op.create_index("ix_insights_lead_views_closed", "lead_views", ["rejected_reason", "lost_reason"], schema=S,
                    postgresql_include=list(FILTERED_BY), postgresql_where=sa.text("rejected IS true OR lost IS true"))
    from leadbridge_insights.views_backfill import backfill_sync

    backfill_sync(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_insights_lead_views_closed", "lead_views", schema=S)
    for name in ("touch_secs", "route_secs"):
        op.drop_index(f"ix_insights_lead_views_{name}", "lead_views", schema=S)
    for name in ("touches", "sla_at_risk", "nurtured", "mql", "route_bucket", "touch_bucket"):
        op.drop_column("lead_views", name, schema=S)
