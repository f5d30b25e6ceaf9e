"""lead and sales text as TEXT: the limits are the event contracts'

Revision ID: 0003
Revises: outbox_parking
Create Date: 2026-12-01 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = 'outbox_parking'
branch_labels = None
depends_on = None

COLUMNS = {  # (table, column): the old VARCHAR length
    ('leads', 'channel'): 200, ('leads', 'campaign'): 300, ('leads', 'reason'): 1000,
    ('activities', 'kind'): 100, ('activities', 'form_type'): 100, ('activities', 'channel'): 200,
    ('activities', 'campaign'): 300, ('activities', 'asset'): 500,
}


def upgrade() -> None:
    for (table, column), length in COLUMNS.items():
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length=length), schema='scoring')


def downgrade() -> None:  # truncates what no longer fits
    for (table, column), length in COLUMNS.items():
        op.alter_column(table, column, type_=sa.String(length=length), existing_type=sa.Text(), schema='scoring',
                        postgresql_using=f'left({column}, {length})')
