"""insights.lead_search: the lead search's text and its trigram index move out of lead_views into a table of
their own, written only when the text changes.

Revision ID: 0006
Revises: 0005

lead_views is rewritten several times per lead and mostly not as HOT updates (it carries ten indexes): each
new row version put every trigram of the search text into the GIN index again, about 3 KiB of WAL per lead
in the pipeline. Each lead keeps its text (a row without one, as migration 0004's backfill writes, gets its
id, contact and owner, as ``lead_row.search_text`` puts them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "insights"
_TEXT_OF_THE_ROW = ("lower(concat_ws(' ', lead_id, nullif(name, ''), nullif(email, ''), nullif(company, ''), "
                    "nullif(rep, ''), nullif(rep_name, '')))")


def upgrade() -> None:
    op.create_table("lead_search", sa.Column("lead_id", sa.String(200), nullable=False),
                    sa.Column("search", sa.Text(), nullable=False), sa.PrimaryKeyConstraint("lead_id"), schema=S)
    op.execute(f"INSERT INTO {S}.lead_search (lead_id, search) "
               f"SELECT lead_id, coalesce(search, {_TEXT_OF_THE_ROW}) FROM {S}.lead_views")
    op.create_index("ix_insights_lead_search_search", "lead_search", ["search"], schema=S, postgresql_using="gin",
                    postgresql_ops={"search": "gin_trgm_ops"})
    op.drop_index("ix_insights_lead_views_search", "lead_views", schema=S)
    op.drop_column("lead_views", "search", schema=S)


def downgrade() -> None:
    op.add_column("lead_views", sa.Column("search", sa.Text()), schema=S)
    op.execute(f"UPDATE {S}.lead_views AS v SET search = s.search FROM {S}.lead_search AS s WHERE s.lead_id = v.lead_id")
    op.create_index("ix_insights_lead_views_search", "lead_views", ["search"], schema=S, postgresql_using="gin",
                    postgresql_ops={"search": "gin_trgm_ops"})
    op.drop_table("lead_search", schema=S)
