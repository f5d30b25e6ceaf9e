"""The managers' views: the flat lead row, lead_views (filters, speed to lead, trends, load, live lists,
search), breaches, overflows and the roster.

Revision ID: 0003
Revises: outbox_parking
Create Date: 2026-12-01 15:00:00

Leads projected before this revision appear in lead_views when their next event arrives.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = 'outbox_parking'
branch_labels = None
depends_on = None

S = 'insights'
STRINGS = ("channel", "campaign", "source", "team", "rep", "waiting_pool", "alert_owner")
TEXTS = ("rep_name", "rejected_reason", "lost_reason", "name", "email", "company")
TIMES = ("mql_at", "routed_at", "assigned_at", "first_touch_at", "waiting_since", "alert_due_at")
FLAGS = ("routed", "within_sla", "breached", "accepted", "rejected", "qualified", "won", "lost", "is_open", "unowned")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    columns = [sa.Column("lead_id", sa.String(200), nullable=False),
               sa.Column("cohort_at", sa.DateTime(timezone=True), nullable=False),
               sa.Column("is_test", sa.Boolean(), nullable=False)]
    columns += [sa.Column(n, sa.String(200)) for n in STRINGS]
    columns += [sa.Column("status", sa.String(20)), sa.Column("alert_state", sa.String(20)),
                sa.Column("alert_kind", sa.String(20))]
    columns += [sa.Column(n, sa.DateTime(timezone=True)) for n in TIMES]
    columns += [sa.Column(n, sa.Float()) for n in ("touch_secs", "route_secs", "won_amount")]
    columns += [sa.Column(n, sa.Boolean()) for n in FLAGS]
    columns += [sa.Column(n, sa.Text()) for n in TEXTS]
    columns += [sa.Column("search", sa.Text())]
    op.create_table("lead_views", *columns, sa.PrimaryKeyConstraint("lead_id"), schema=S)
    op.create_index("ix_insights_lead_views_cohort", "lead_views", ["cohort_at"], schema=S)
    op.create_index("ix_insights_lead_views_open", "lead_views", ["rep"], schema=S, postgresql_where=sa.text("is_open"))
    op.create_index("ix_insights_lead_views_assigned", "lead_views", ["assigned_at"], schema=S)
    op.create_index("ix_insights_lead_views_unowned", "lead_views", ["cohort_at"], schema=S,
                    postgresql_where=sa.text("unowned"))
    op.create_index("ix_insights_lead_views_waiting", "lead_views", ["waiting_pool"], schema=S,
                    postgresql_where=sa.text("waiting_pool IS NOT NULL"))
    op.create_index("ix_insights_lead_views_alert", "lead_views", ["alert_due_at"], schema=S,
                    postgresql_where=sa.text("alert_state IS NOT NULL"))
    op.create_index("ix_insights_lead_views_search", "lead_views", ["search"], schema=S, postgresql_using="gin",
                    postgresql_ops={"search": "gin_trgm_ops"})
    op.create_table(
        "sla_breaches",
        sa.Column("event_id", sa.String(64), nullable=False), sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("assignee_id", sa.String(200)), sa.Column("team", sa.String(200)),
        sa.Column("kind", sa.String(20), nullable=False), sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"), schema=S)
    op.create_index("ix_insights_sla_breaches_fired", "sla_breaches", ["fired_at"], schema=S)
    op.create_table(
        "pool_overflows",
        sa.Column("event_id", sa.String(64), nullable=False), sa.Column("pool", sa.String(200), nullable=False),
        sa.Column("lead_id", sa.String(200), nullable=False), sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "pool"), schema=S)
    op.create_index("ix_insights_pool_overflows_at", "pool_overflows", ["occurred_at"], schema=S)
    op.create_table(
        "roster",
        sa.Column("id", sa.Integer(), nullable=False), sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"), schema=S)


def downgrade() -> None:
    op.drop_table("roster", schema=S)
    op.drop_table("pool_overflows", schema=S)
    op.drop_table("sla_breaches", schema=S)
    op.drop_table("lead_views", schema=S)
