"""Intake's PostgreSQL schema ``intake``: leads, their dedupe keys, activities, follow-ups, API keys,
pending platform fetches, quarantined platform leads, plus the backbone's outbox and processed-events tables."""

from __future__ import annotations

from leadbridge_events.db import ROOM_FOR_UPDATES, add_backbone_tables
from leadbridge_events.migrations import Migrations
from sqlalchemy import (
                        Boolean,
                        Column,
                        DateTime,
                        Index,
                        Integer,
                        MetaData,
                        PrimaryKeyConstraint,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
                        func,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "intake"
metadata = MetaData(schema=SCHEMA)
_now = func.now()

leads = Table(
    "leads", metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_activity_at", DateTime(timezone=True), nullable=False),
    Column("email", String(320)),
    Column("phone", String(40)),
    Column("source", String(100)),
    Column("channel", String(50)),
    Column("is_test", Boolean, nullable=False, default=False),
    Column("status", String(40), nullable=False, default="captured"),
    Column("final_outcome", String(20)),
    Column("activity_count", Integer, nullable=False, default=0),
    Column("profile", JSONB, nullable=False),
    Column("dedupe_key", String(300)),
    Column("status_detail", JSONB, nullable=False, default=dict),
    postgresql_with=ROOM_FOR_UPDATES,  # updated in place: HOT updates
)
Index("ix_intake_leads_email", leads.c.email, leads.c.last_activity_at)
Index("ix_intake_leads_phone", leads.c.phone, leads.c.last_activity_at)

# one row per dedupe key: (scope, key) is unique, so a redelivery or a double submit finds the first's lead
submissions = Table(
    "submissions", metadata,
    Column("scope", String(100), nullable=False),
    Column("key", String(300), nullable=False),
    Column("lead_id", String(36), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # SHA-256 of the request body an Idempotency-Key was first used with: reused with another body, 422
    Column("fingerprint", String(64)),
    PrimaryKeyConstraint("scope", "key"),
)

activities = Table(
    "activities", metadata,
    Column("id", String(36), primary_key=True),
    Column("lead_id", String(36), nullable=False, index=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("form_type", String(50)),
    Column("channel", String(50)),
    Column("source", String(100)),
)

follow_ups = Table(
    "follow_ups", metadata,
    Column("id", String(36), primary_key=True),
    Column("lead_id", String(36), nullable=False, index=True),
    Column("touch_type", String(20), nullable=False),
    Column("outcome", String(20)),
    Column("actor", String(200)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    Column("details", JSONB, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(20), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("source", String(100), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("revoked_at", DateTime(timezone=True)),
)

# a platform notification whose lead data must still be fetched; retried until done, never dropped
pending_fetches = Table(
    "pending_fetches", metadata,
    Column("platform", String(20), nullable=False),
    Column("platform_lead_id", String(200), nullable=False),
    Column("notification", JSONB, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("done_at", DateTime(timezone=True)),
    Column("lead_id", String(36)),
    PrimaryKeyConstraint("platform", "platform_lead_id"),
)
Index("ix_intake_pending_fetches_due", pending_fetches.c.next_attempt_at, postgresql_where=pending_fetches.c.done_at.is_(None))

# a lead a platform delivered (we answered 200) that failed validation or mapping: kept with its raw payload
# and why, until an operator re-processes it (after a fix, a mapping change or with corrections)
quarantined_leads = Table(
    "quarantined_leads", metadata,
    Column("id", String(36), primary_key=True),
    Column("platform", String(20), nullable=False),
    Column("platform_lead_id", String(200), nullable=False),
    Column("raw", JSONB, nullable=False, doc="The platform's payload as delivered (secrets such as google_key removed)."),
    Column("reason", String(40), nullable=False, doc="One of quarantine.REASONS."),
    Column("errors", JSONB, nullable=False, doc="[{field, message, type}], never the values."),
    Column("status", String(20), nullable=False, doc="quarantined | released"),
    Column("attempts", Integer, nullable=False, default=0, doc="Re-process attempts."),
    Column("corrections", JSONB, doc="Field values an operator supplied on the last re-process."),
    Column("lead_id", String(36), doc="The lead it became once released."),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
    UniqueConstraint("platform", "platform_lead_id", name="uq_intake_quarantined_platform_lead"),
)
Index("ix_intake_quarantined_status", quarantined_leads.c.status, quarantined_leads.c.received_at)

outbox, processed_events = add_backbone_tables(metadata)

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_intake")
