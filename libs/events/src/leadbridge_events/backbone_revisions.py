"""Alembic operations for changes to the backbone tables (``db.add_backbone_tables``) every service has.

The outbox and processed-event tables live in each service's own schema, so each change to them is one
revision in *every* service's ``migrations/`` folder; the revision files only call these functions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def add_outbox_parking(schema: str) -> None:
    """``attempts``, ``parked_at``, ``park_reason``: a row failing for its own sake is counted, then parked."""
    op.add_column("outbox", sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
                  schema=schema)
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True), schema=schema)
    op.add_column("outbox", sa.Column("park_reason", sa.Text(), nullable=True), schema=schema)


def drop_outbox_parking(schema: str) -> None:
    for column in ("park_reason", "parked_at", "attempts"):
        op.drop_column("outbox", column, schema=schema)
