"""LeadBridge event contracts and the Kafka/PostgreSQL plumbing every service shares."""

from .contracts import (
                        Bant,
                        Contact,
                        EventData,
                        FollowUpLogged,
                        FollowUpOutcome,
                        LeadActivityRecorded,
                        LeadCaptured,
                        LeadProfile,
                        LeadRouted,
                        LeadScored,
                        MatchedRule,
                        SlaAtRisk,
                        SlaBreached,
                        SlaKind,
                        Stage,
                        TouchType,
)
from .envelope import Envelope, UndecodableEvent

__all__ = [
    "Bant", "Contact", "Envelope", "EventData", "FollowUpLogged", "FollowUpOutcome", "LeadActivityRecorded",
    "LeadCaptured", "LeadProfile", "LeadRouted", "LeadScored", "MatchedRule", "SlaAtRisk", "SlaBreached",
    "SlaKind", "Stage", "TouchType", "UndecodableEvent",
]
