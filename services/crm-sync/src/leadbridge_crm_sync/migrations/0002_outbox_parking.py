"""outbox parking: a row that fails for its own sake is counted, then parked with its reason

Revision ID: outbox_parking
Revises: 0001
"""

from __future__ import annotations

from leadbridge_events.backbone_revisions import add_outbox_parking, drop_outbox_parking

revision = "outbox_parking"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_parking("crm_sync")


def downgrade() -> None:
    drop_outbox_parking("crm_sync")
