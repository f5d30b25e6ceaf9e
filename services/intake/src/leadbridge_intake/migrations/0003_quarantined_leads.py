"""quarantined platform leads

Revision ID: 0003
Revises: outbox_parking
Create Date: 2026-12-01 15:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = 'outbox_parking'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quarantined_leads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('platform_lead_id', sa.String(length=200), nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('errors', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('corrections', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('lead_id', sa.String(length=36), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'platform_lead_id', name='uq_intake_quarantined_platform_lead'),
    schema='intake'
    )
    op.create_index('ix_intake_quarantined_status', 'quarantined_leads', ['status', 'received_at'], unique=False,
                    schema='intake')


def downgrade() -> None:
    op.drop_index('ix_intake_quarantined_status', table_name='quarantined_leads', schema='intake')
    op.drop_table('quarantined_leads', schema='intake')
