"""sla_watcher.leads: room in each page for an updated row's next version (HOT updates, no new index entries)

Revision ID: 0003
Revises: outbox_parking
"""

from __future__ import annotations

from leadbridge_events.backbone_revisions import leave_room_for_updates, pack_pages_full

revision = "0003"
down_revision = "outbox_parking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leave_room_for_updates("sla_watcher", "leads")


def downgrade() -> None:
    pack_pages_full("sla_watcher", "leads")
