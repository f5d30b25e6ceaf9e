"""crm-sync's tables (PostgreSQL schema ``crm_sync``), plus the backbone outbox and processed_events.

- ``subscriptions``: signed-webhook endpoints, per event type, with their signing secret(s);
- ``destinations``: the health of every endpoint (a subscription, a HubSpot portal, a Salesforce org):
  failing since when, blocked until when (the next probe), paused;
- ``deliveries``: the durable delivery queue, one row per (destination, event), written in the consumer's
  transaction (with the event's processed-id claim); the sender drains it in per-lead order;
- ``delivery_attempts``: every attempt (status code, error): the per-lead delivery log;
- ``crm_records``: which CRM record a lead became (contact / Lead id), to map inbound activity back;
- ``crm_owners``: CRM user id -> rep id, learnt from ``lead-routed`` (``assignee_crm_owner_ids``).

``processed_events`` also dedupes inbound CRM notifications (consumer ``hubspot:<portal>`` /
``salesforce:<org>``, event id = HubSpot's eventId / the Outbound Message's notification id).
"""

from __future__ import annotations

from leadbridge_events.db import add_backbone_tables
from leadbridge_events.migrations import Migrations
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "crm_sync"
metadata = MetaData(schema=SCHEMA)
outbox, processed_events = add_backbone_tables(metadata)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", JSONB, nullable=False),
    Column("teams", JSONB, nullable=False, server_default="[]"),
    Column("description", Text),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text),
    Column("previous_secret_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("rotated_at", DateTime(timezone=True)),
)

destinations = Table(
    "destinations", metadata,
    Column("id", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("failing_since", DateTime(timezone=True)),
    Column("blocked_until", DateTime(timezone=True)),
    Column("paused_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_error", Text),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False, unique=True),
    Column("destination", String(200), nullable=False),
    Column("lead_id", String(200), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("crm_record_id", String(100)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
)
Index("ix_crm_sync_deliveries_due", deliveries.c.next_attempt_at, postgresql_where=deliveries.c.status == "pending")
Index("ix_crm_sync_deliveries_lead_order", deliveries.c.destination, deliveries.c.lead_id, deliveries.c.id,
      postgresql_where=deliveries.c.status == "pending")
Index("ix_crm_sync_deliveries_lead", deliveries.c.lead_id)

delivery_attempts = Table(
    "delivery_attempts", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False),
    Column("lead_id", String(200), nullable=False),
    Column("destination", String(200), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("result", String(20), nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_crm_sync_attempts_lead", delivery_attempts.c.lead_id, delivery_attempts.c.id)

crm_records = Table(
    "crm_records", metadata,
    Column("destination", String(200), primary_key=True),
    Column("lead_id", String(200), primary_key=True),
    Column("record_id", String(100), nullable=False),
    Column("owner_id", String(100)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_crm_sync_records_by_crm_id", crm_records.c.destination, crm_records.c.record_id)

crm_owners = Table(
    "crm_owners", metadata,
    Column("crm", String(20), primary_key=True),
    Column("owner_id", String(100), primary_key=True),
    Column("rep_id", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_crm_sync")
