"""The ``what-if`` command: read stored leads (read-only), compare two models, print the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from leadbridge_events.db import make_engine
from sqlalchemy import text

from . import store
from .model_file import load_model
from .settings import ScoringSettings
from .whatif import LeadFacts, compare, render


async def run_what_if(settings: ScoringSettings, proposed_path: str, *, baseline: str | None = None,
                      as_of: str | None = None, as_json: bool = False) -> int:
    proposed = load_model(proposed_path)
    current = load_model(baseline or settings.model_path)
    now = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{store.SCHEMA}.leads"})
            stored = await store.all_leads(conn) if exists else []
            await conn.rollback()  # read-only: nothing is written, nothing is emitted
    finally:
        await engine.dispose()
    facts = [LeadFacts(s.lead_id, s.profile, s.state, s.activities, s.channel, s.campaign) for s in stored]
    report = compare(facts, current, proposed, now)
    print(json.dumps(report.as_dict(), indent=2) if as_json else render(report))
    return 0
