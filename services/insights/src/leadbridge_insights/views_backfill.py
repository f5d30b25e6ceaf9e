"""Rebuild every lead's ``lead_views`` row from its stored facts (``lead_facts``). An adapter, run by
migration 0004 on the migration's connection.

A lead without a row gets one (no contact: its name, email and company were never stored before 0003, so
they come with its next event); a lead with a row gets its derived columns recomputed by ``lead_row.row_of``
and keeps its contact. The search text is not written here: migration 0006 gives every row its
``lead_search`` row (a row without a text, as this one's, is searchable by its id and owner). Idempotent: the rows depend on
the facts alone, so running it again writes the same rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from .facts import LeadFacts
from .lead_row import row_of
from .store import lead_facts, lead_views

BATCH = 2000


def view_row(facts: LeadFacts, cohort_at: Any, is_test: bool) -> dict[str, Any]:
    """A new row for a lead known only by its facts: no contact yet."""
    return {"lead_id": facts.lead_id, "cohort_at": cohort_at, "is_test": is_test, **row_of(facts)}


def backfill_sync(conn: Connection, batch: int = BATCH) -> int:
    """Upsert every lead's row in lead id order, ``batch`` leads per statement; the number of leads."""
    after, done = "", 0
    while True:
        rows = conn.execute(select(lead_facts.c.lead_id, lead_facts.c.cohort_at, lead_facts.c.is_test,
                                   lead_facts.c.facts).where(lead_facts.c.lead_id > after)
                            .order_by(lead_facts.c.lead_id).limit(batch)).all()
        if not rows:
            return done
        values = [view_row(LeadFacts.from_json(r.facts), r.cohort_at, r.is_test) for r in rows]
        stmt = insert(lead_views)
        derived = [c for c in values[0] if c != "lead_id"]
        conn.execute(stmt.on_conflict_do_update(index_elements=[lead_views.c.lead_id],
                                                set_={c: stmt.excluded[c] for c in derived}), values)
        after, done = rows[-1].lead_id, done + len(rows)
