"""The router's tables in PostgreSQL schema ``router`` (plus the backbone outbox and processed_events)."""

from __future__ import annotations

from leadbridge_events.db import add_backbone_tables
from leadbridge_events.migrations import Migrations
from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "router"
metadata = MetaData(schema=SCHEMA)
outbox, processed_events = add_backbone_tables(metadata)

teams = Table(
    "teams", metadata,
    Column("id", String(100), primary_key=True),
    Column("spec", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
reps = Table(
    "reps", metadata,
    Column("id", String(100), primary_key=True),
    Column("team", String(100), nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# key 'routing': {"rules": [...], "fallback_pool": ...}
config = Table(
    "config", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", JSONB, nullable=False),
)
# One row: a new random version whenever teams, reps or config change (a statement trigger in migration 0003),
# in the same transaction as the change, so a process may cache the parsed roster and re-read it only when
# the version moved. No row (a schema built without the migrations) means: do not cache.
roster_version = Table(
    "roster_version", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", String(64), nullable=False),
)
# One row per pool: the lock every assignment in the pool takes (SELECT ... FOR UPDATE), and its vtime.
pool_state = Table(
    "pool_state", metadata,
    Column("pool", String(100), primary_key=True),
    Column("vtime", Float, nullable=False, server_default="0"),
)
rep_counters = Table(
    "rep_counters", metadata,
    Column("pool", String(100), primary_key=True),
    Column("rep_id", String(100), primary_key=True),
    Column("pass", Float, nullable=False),
    Column("assigned", Integer, nullable=False),
    Column("last_assigned_at", DateTime(timezone=True)),
)
assignments = Table(
    "assignments", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", String(200), nullable=False),
    Column("rep_id", String(100), nullable=False),
    Column("pool", String(100)),
    Column("rule", String(100)),
    Column("outcome", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True)),
    Column("release_reason", Text),
    # set when the rep finished with the lead (won | lost | nurture): it still counts toward the daily and
    # weekly caps of the period it was assigned in; NULL on an open or taken-away (re-routed) assignment
    Column("close_outcome", String(20)),
)
# never two open assignments of one lead, whatever the replicas do
Index("ux_router_assignments_open_lead", assignments.c.lead_id, unique=True,
      postgresql_where=assignments.c.released_at.is_(None))
Index("ix_router_assignments_open_rep", assignments.c.rep_id, assignments.c.assigned_at,
      postgresql_where=assignments.c.released_at.is_(None))
# per lead: what routing needs to re-route it later (facts only, no contact data)
leads = Table(
    "leads", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("status", String(40), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("rule", String(100)),
    Column("pool", String(100)),
    Column("assignee", String(100)),
    Column("previous_assignees", JSONB, nullable=False, server_default="[]"),
    Column("facts", JSONB, nullable=False),
    Column("event", JSONB, nullable=False, doc="The lead-scored data last routed (profile snapshot for CRMs)."),
    Column("reason", Text),
    Column("hold_until", DateTime(timezone=True)),
    Column("closed_outcome", String(20), doc="won | lost, from follow-up-logged"),
    Column("closed_at", DateTime(timezone=True), doc="When the outcome happened (the follow-up's occurred_at)."),
    Column("waiting_since", DateTime(timezone=True), doc="Returned to nurture for capacity: waiting for a slot."),
    Column("waiting_pool", String(100), doc="The pool a waiting lead is routed from when a slot frees up."),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_router_leads_held", leads.c.hold_until, postgresql_where=leads.c.status == "held")
Index("ix_router_leads_waiting", leads.c.waiting_pool, leads.c.waiting_since,
      postgresql_where=leads.c.waiting_since.isnot(None))

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_router")
