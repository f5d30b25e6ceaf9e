"""The watcher's PostgreSQL schema ``sla_watcher``: leads, deadlines, touches, plus outbox/processed_events.

The timer loop claims ``deadlines`` rows by ``next_fire_at`` (the at-risk time, then the due time) through
a partial index over open deadlines only, so claiming stays an index range scan however many deadlines
are open, and memory stays flat: nothing is held in process memory between polls.
"""

from __future__ import annotations

from leadbridge_events.db import ROOM_FOR_UPDATES, add_backbone_tables
from leadbridge_events.migrations import Migrations
from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, text

SCHEMA = "sla_watcher"
metadata = MetaData(schema=SCHEMA)


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


leads = Table(
    "leads", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("attempt", Integer),  # NULL until the lead has been routed (touches may come first)
    Column("assignee_id", String(200)),
    Column("team", String(200)),
    Column("policy", String(100)),
    _ts("routed_at"),
    _ts("updated_at", nullable=False),
    postgresql_with=ROOM_FOR_UPDATES,  # updated in place: HOT updates
)

deadlines = Table(
    "deadlines", metadata,
    Column("id", String(64), primary_key=True),
    Column("lead_id", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("policy", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("assignee_id", String(200)),
    Column("team", String(200)),
    _ts("starts_at", nullable=False),
    _ts("due_at", nullable=False),
    _ts("at_risk_at"),
    _ts("next_fire_at"),  # when the timer must look at it next; NULL once it is no longer open
    Column("required", Integer, nullable=False, server_default=text("1")),
    Column("count", Integer, nullable=False, server_default=text("0")),
    Column("late_count", Integer, nullable=False, server_default=text("0")),
    Column("escalate", Boolean, nullable=False, server_default=text("true")),
    Column("status", String(20), nullable=False),
    _ts("at_risk_fired_at"),
    _ts("breach_fired_at"),
    _ts("met_at"),
)
Index("ix_sla_deadlines_due", deadlines.c.next_fire_at, postgresql_where=deadlines.c.status == "open")
Index("ix_sla_deadlines_lead", deadlines.c.lead_id)
Index("ix_sla_deadlines_untouched", deadlines.c.team, deadlines.c.starts_at,
      postgresql_where=text("kind = 'first_touch' AND status IN ('open', 'breached')"))

touches = Table(
    "touches", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("follow_up_id", String(200), primary_key=True),
    _ts("occurred_at", nullable=False),
    Column("touch_type", String(20), nullable=False),
    Column("outcome", String(30)),
    _ts("logged_at"),
)

outbox, processed_events = add_backbone_tables(metadata)

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_sla_watcher")
