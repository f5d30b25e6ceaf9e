"""idempotency key fingerprint: the body an Idempotency-Key was first used with

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('submissions', sa.Column('fingerprint', sa.String(length=64), nullable=True), schema='intake')


def downgrade() -> None:
    op.drop_column('submissions', 'fingerprint', schema='intake')
