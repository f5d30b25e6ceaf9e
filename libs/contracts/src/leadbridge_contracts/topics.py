"""The topic registry: every topic LeadBridge uses, what it carries, and how it is partitioned.

Every record's key is the lead id, so all events of one lead land on one partition, in order.
Each topic has a dead-letter twin ``<topic>.dlq`` for records its consumers could not handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    event_types: tuple[str, ...]
    partitions: int = 6
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


LEAD_CAPTURED = Topic(
    "lead-captured",
    ("lead-captured", "lead-activity-recorded"),
    description="Intake's accepted leads, and repeat activity of known leads (emitted by intake).",
)
LEAD_SCORED = Topic("lead-scored", ("lead-scored",), description="Scores and stages (emitted by scoring).")
LEAD_ROUTED = Topic("lead-routed", ("lead-routed",), description="Assignments and re-routes (emitted by router).")
FOLLOW_UP_LOGGED = Topic(
    "follow-up-logged", ("follow-up-logged",), description="Touches and outcomes from CRMs (emitted by intake and crm-sync)."
)
SLA_AT_RISK = Topic("sla-at-risk", ("sla-at-risk",), description="Deadlines close to breach (emitted by sla-watcher).")
SLA_BREACHED = Topic("sla-breached", ("sla-breached",), description="Missed deadlines (emitted by sla-watcher).")
SLA_DEADLINES = Topic(
    "sla-deadlines",
    ("sla-deadlines-set", "sla-deadline-met"),
    description="Deadlines started or superseded by a routing, and first-touch deadlines met (emitted by sla-watcher).",
)
ROSTER = Topic(
    "roster", ("roster-changed",), partitions=1,
    description="The whole routing roster after each change, keyed 'roster' (emitted by router).",
)

CRM_DELIVERIES = Topic(
    "crm-deliveries", ("crm-delivery-recorded",),
    description="Delivery attempts of lead events to CRMs and webhooks, for the lead's timeline (emitted by crm-sync).",
)

ALL_TOPICS: tuple[Topic, ...] = (LEAD_CAPTURED, LEAD_SCORED, LEAD_ROUTED, FOLLOW_UP_LOGGED, SLA_AT_RISK, SLA_BREACHED,
                                 SLA_DEADLINES, CRM_DELIVERIES, ROSTER)

_BY_EVENT_TYPE = {t: topic for topic in ALL_TOPICS for t in topic.event_types}


def topic_for(event_type: str) -> Topic:
    """The topic an event type is published to."""
    try:
        return _BY_EVENT_TYPE[event_type]
    except KeyError:
        raise KeyError(f"no topic carries event type {event_type!r}") from None
