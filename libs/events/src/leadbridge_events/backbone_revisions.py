"""Alembic operations the services' revisions share: changes to the backbone tables (``db.add_backbone_tables``)
every service has, and the backbone's storage option for tables updated in place (``db.ROOM_FOR_UPDATES``).

The outbox and processed-event tables live in each service's own schema, so each change to them is one
revision in *every* service's ``migrations/`` folder; a table given ``ROOM_FOR_UPDATES`` gets one revision in
its own service's. The revision files only call these functions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from .db import ROOM_FOR_UPDATES


def add_outbox_parking(schema: str) -> None:
    """``attempts``, ``parked_at``, ``park_reason``: a row failing for its own sake is counted, then parked."""
    op.add_column("outbox", sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
                  schema=schema)
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True), schema=schema)
    op.add_column("outbox", sa.Column("park_reason", sa.Text(), nullable=True), schema=schema)


def drop_outbox_parking(schema: str) -> None:
    for column in ("park_reason", "parked_at", "attempts"):
        op.drop_column("outbox", column, schema=schema)


def leave_room_for_updates(schema: str, table: str) -> None:
    """``db.ROOM_FOR_UPDATES`` on an existing table: pages written from now on keep room for updated rows."""
    options = ", ".join(f"{k} = {v}" for k, v in ROOM_FOR_UPDATES.items())
    op.execute(f'ALTER TABLE "{schema}"."{table}" SET ({options})')


def pack_pages_full(schema: str, table: str) -> None:
    op.execute(f'ALTER TABLE "{schema}"."{table}" RESET ({", ".join(ROOM_FOR_UPDATES)})')
