"""LeadBridge event contracts: events (typed value objects, past tense, versioned), their envelope, topics."""

from .envelope import Envelope, UndecodableEvent
from .events import (
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

__all__ = [
    "Bant", "Contact", "Envelope", "EventData", "FollowUpLogged", "FollowUpOutcome", "LeadActivityRecorded",
    "LeadCaptured", "LeadProfile", "LeadRouted", "LeadScored", "MatchedRule", "SlaAtRisk", "SlaBreached",
    "SlaKind", "Stage", "TouchType", "UndecodableEvent",
]
