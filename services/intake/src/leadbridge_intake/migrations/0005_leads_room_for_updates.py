"""intake.leads: room in each page for an updated row's next version (HOT updates, no new index entries)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from leadbridge_events.backbone_revisions import leave_room_for_updates, pack_pages_full

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leave_room_for_updates("intake", "leads")


def downgrade() -> None:
    pack_pages_full("intake", "leads")
