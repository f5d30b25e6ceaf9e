"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:01:35.614003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # if_not_exists: a database the router created before it had migrations (create_all) adopts them
    op.create_table('assignments',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('rep_id', sa.String(length=100), nullable=False),
    sa.Column('pool', sa.String(length=100), nullable=True),
    sa.Column('rule', sa.String(length=100), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='router', if_not_exists=True
    )
    op.create_index('ix_router_assignments_open_rep', 'assignments', ['rep_id', 'assigned_at'], unique=False, schema='router', postgresql_where=sa.text('released_at IS NULL'), if_not_exists=True)
    op.create_index('ux_router_assignments_open_lead', 'assignments', ['lead_id'], unique=True, schema='router', postgresql_where=sa.text('released_at IS NULL'), if_not_exists=True)
    op.create_table('config',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('key'),
    schema='router', if_not_exists=True
    )
    op.create_table('leads',
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rule', sa.String(length=100), nullable=True),
    sa.Column('pool', sa.String(length=100), nullable=True),
    sa.Column('assignee', sa.String(length=100), nullable=True),
    sa.Column('previous_assignees', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('facts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('hold_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('lead_id'),
    schema='router', if_not_exists=True
    )
    op.create_index('ix_router_leads_held', 'leads', ['hold_until'], unique=False, schema='router', postgresql_where=sa.text("status = 'held'"), if_not_exists=True)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id'),
    schema='router', if_not_exists=True
    )
    op.create_index('ix_router_outbox_unsent', 'outbox', ['id'], unique=False, schema='router', postgresql_where=sa.text('sent_at IS NULL'), if_not_exists=True)
    op.create_table('pool_state',
    sa.Column('pool', sa.String(length=100), nullable=False),
    sa.Column('vtime', sa.Float(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('pool'),
    schema='router', if_not_exists=True
    )
    op.create_table('processed_events',
    sa.Column('consumer', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id'),
    schema='router', if_not_exists=True
    )
    op.create_table('rep_counters',
    sa.Column('pool', sa.String(length=100), nullable=False),
    sa.Column('rep_id', sa.String(length=100), nullable=False),
    sa.Column('pass', sa.Float(), nullable=False),
    sa.Column('assigned', sa.Integer(), nullable=False),
    sa.Column('last_assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('pool', 'rep_id'),
    schema='router', if_not_exists=True
    )
    op.create_table('reps',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('team', sa.String(length=100), nullable=False),
    sa.Column('spec', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='router', if_not_exists=True
    )
    op.create_table('teams',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('spec', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='router', if_not_exists=True
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table('teams', schema='router')
    op.drop_table('reps', schema='router')
    op.drop_table('rep_counters', schema='router')
    op.drop_table('processed_events', schema='router')
    op.drop_table('pool_state', schema='router')
    op.drop_index('ix_router_outbox_unsent', table_name='outbox', schema='router', postgresql_where=sa.text('sent_at IS NULL'))
    op.drop_table('outbox', schema='router')
    op.drop_index('ix_router_leads_held', table_name='leads', schema='router', postgresql_where=sa.text("status = 'held'"))
    op.drop_table('leads', schema='router')
    op.drop_table('config', schema='router')
    op.drop_index('ux_router_assignments_open_lead', table_name='assignments', schema='router', postgresql_where=sa.text('released_at IS NULL'))
    op.drop_index('ix_router_assignments_open_rep', table_name='assignments', schema='router', postgresql_where=sa.text('released_at IS NULL'))
    op.drop_table('assignments', schema='router')
    # ### end Alembic commands ###
