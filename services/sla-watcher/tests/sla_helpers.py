"""Shared builders for the watcher's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, FollowUpOutcome, LeadRouted, TouchType
from leadbridge_sla_watcher.policies import SlaConfig


def fast_config(first_touch_seconds: float = 2.0, at_risk: float | None = 0.5) -> SlaConfig:
    """Wall-clock policy with only a short first-touch deadline."""
    return SlaConfig.model_validate({"policies": {"standard": {
        "first_touch": {"minutes": first_touch_seconds / 60, "clock": "wall"},
        "cadence": None, "disposition": None, "at_risk_fraction": at_risk}}})


def new_lead_id() -> str:
    return f"lead-{uuid.uuid4().hex[:12]}"


def routed(lead_id: str, *, at: datetime | None = None, attempt: int = 1, assignee: str = "rep-1",
           team: str = "smb") -> Envelope:
    data = LeadRouted(lead_id=lead_id, routed_at=at or datetime.now(UTC), assignee_id=assignee, team=team,
                      reason="test", attempt=attempt, sla_policy="standard")
    return Envelope.of(data, source="router", lead_id=lead_id)


def touched(lead_id: str, *, at: datetime | None = None, outcome: FollowUpOutcome | None = None,
            kind: TouchType = TouchType.CALL) -> Envelope:
    now = datetime.now(UTC)
    data = FollowUpLogged(lead_id=lead_id, follow_up_id=uuid.uuid4().hex, touch_type=kind, occurred_at=at or now,
                          logged_at=now, outcome=outcome, actor="rep-1")
    return Envelope.of(data, source="intake", lead_id=lead_id)
