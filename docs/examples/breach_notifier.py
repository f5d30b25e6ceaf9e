"""A consumer of your own: note every breached SLA for the team's channel (the example in docs/backbone.md).

Run it beside `make run`, with the services' development token secret:
`set -a; . deploy/demo/demo.env; set +a; uv run python docs/examples/breach_notifier.py`.
SIGTERM or Ctrl-C stops it cleanly: the event in flight is finished and its offset committed.
"""

from __future__ import annotations

import logging
import sys

from leadbridge_contracts.events import SlaBreached
from leadbridge_events import Envelope, EventHandlers, HandlerContext, Service, ServiceSettings, add_backbone_tables, on
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, DateTime, MetaData, String, Table

log = logging.getLogger("leadbridge.breach-notifier")

metadata = MetaData(schema="breach_notifier")  # its own schema: outbox, processed events and its table
add_backbone_tables(metadata)
notices = Table(
    "notices", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("lead_id", String(64), nullable=False),
    Column("team", String(200)),
    Column("breached_at", DateTime(timezone=True), nullable=False),
    Column("noted_at", DateTime(timezone=True), nullable=False),
)


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BREACH_NOTIFIER_")  # BREACH_NOTIFIER_PORT, ..._GROUP_ID

    port: int = 8010


async def note_breach(event: Envelope[SlaBreached], ctx: HandlerContext[None]) -> None:
    """One transaction with the event's claim: a redelivered event changes nothing."""
    breach = event.data
    await ctx.session.execute(notices.insert().values(
        event_id=event.id, lead_id=event.lead_id, team=breach.team, breached_at=breach.fired_at, noted_at=ctx.now()))
    log.info("SLA breached", extra={"event_id": event.id, "lead_id": event.lead_id, "team": breach.team})


HANDLERS = EventHandlers(on(SlaBreached, note_breach), emits=())  # what it consumes and emits

SERVICE = Service(name="breach-notifier", settings=NotifierSettings, metadata=metadata, handlers=HANDLERS)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
