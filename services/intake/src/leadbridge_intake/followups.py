"""Follow-ups reported by CRMs: the request model and the rules. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadbridge_contracts.events import (
    ACTOR_MAX,
    AMOUNT_MAX,
    FINAL_OUTCOMES,
    NOTE_MAX,
    REASON_MAX,
    Bant,
    FollowUpOutcome,
    TouchType,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .normalize import strip_nul


class FollowUpRequest(BaseModel):
    """A touch on a lead (call, email, meeting, social, note), who did it, when, and its outcome."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    touch_type: TouchType
    actor: str | None = Field(default=None, max_length=ACTOR_MAX, description="Rep id who did it.")
    occurred_at: datetime | None = Field(default=None, description="When it happened (default: now).")
    outcome: FollowUpOutcome | None = None
    reason: str | None = Field(default=None, max_length=REASON_MAX, description="Required for rejected and lost.")
    bant: Bant | None = Field(default=None, description="Required for qualified.")
    amount: float | None = Field(default=None, ge=0, le=AMOUNT_MAX, description="Won amount.")
    note: str | None = Field(default=None, max_length=NOTE_MAX)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return strip_nul(data)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @model_validator(mode="after")
    def _outcome_details(self) -> FollowUpRequest:
        if self.outcome in (FollowUpOutcome.REJECTED, FollowUpOutcome.LOST) and not self.reason:
            raise ValueError(f"reason is required when the outcome is {self.outcome.value}")
        if self.outcome == FollowUpOutcome.QUALIFIED and self.bant is None:
            raise ValueError("bant (budget, authority, need, timing) is required when the outcome is qualified")
        if self.amount is not None and self.outcome != FollowUpOutcome.WON:
            raise ValueError("amount is only allowed when the outcome is won")
        return self


class FollowUpConflict(Exception):
    """The lead cannot take this touch; the message says why (409)."""


def check_can_follow_up(final_outcome: str | None) -> None:
    """A lead that was won or lost is closed: no more touches."""
    if final_outcome:
        raise FollowUpConflict(f"lead is closed with final outcome '{final_outcome}'; no further follow-ups accepted")


def is_final(outcome: FollowUpOutcome | None) -> bool:
    return outcome in FINAL_OUTCOMES


def status_after(current: str, outcome: FollowUpOutcome | None) -> str:
    """The lead's status after a follow-up: the outcome if any, otherwise 'contacted' (or unchanged)."""
    if outcome is not None:
        return outcome.value
    return current if current not in ("captured", "scored", "routed", "nurture", "mql", "sql") else "contacted"
