"""The views API's response shapes, for the OpenAPI document (``/docs``). Extra fields are kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SpeedRow(_Open):
    key: str = Field(description="The group's value, or 'total'.")
    population: int = Field(description="Leads owed the step (routed for first touch; MQL or routed for routing).")
    reached: int = Field(description="Leads that got there.")
    median_seconds: float | None
    p90_seconds: float | None
    within: dict[str, float | None] = Field(description="Share of the population within 5m, 1h, 24h.")
    histogram: list[int] = Field(description="Leads per bucket (see buckets).")
    within_sla: int | None = Field(default=None, description="First touch: routed leads whose first touch met the SLA.")
    breached: int | None = Field(default=None, description="First touch: leads with an SLA breach.")
    sla_compliance: float | None = Field(default=None, description="First touch: within_sla / population.")


class SpeedReport(_Open):
    buckets: list[str]
    thresholds: list[str]
    rows: list[SpeedRow]
    total: SpeedRow


class SpeedView(_Open):
    by: str
    filters: dict[str, Any]
    first_touch: SpeedReport = Field(description="Capture -> first touch.")
    routed: SpeedReport = Field(description="Capture -> routed.")


class TrendsView(_Open):
    unit: str
    x: list[str] = Field(description="Bucket starts (UTC), aligned with every series.")
    captured: list[int]
    mql: list[int]
    routed: list[int]
    within_sla: list[int]
    compliance_pct: list[float | None] = Field(description="within_sla / routed, in %.")
    breached: list[int]
    accepted: list[int]
    rejected: list[int]
    won: list[int]
    lost: list[int]


class Stage(_Open):
    stage: str
    label: str
    count: int
    from_previous: float | None
    from_top: float | None


class Reason(_Open):
    reason: str
    count: int
    share: float | None


class FunnelView(_Open):
    filters: dict[str, Any]
    stages: list[Stage]
    counts: dict[str, float]
    rejected_reasons: list[Reason]
    lost_reasons: list[Reason]


class RepLoad(_Open):
    rep: str
    name: str | None
    team: str | None
    open: int
    max_open: int | None
    week_new: int = Field(description="New leads this local week (Monday start).")
    weekly_cap: int | None
    availability: str = Field(description="on shift | off shift | out of office | inactive | unknown")
    breaches_week: int
    at_capacity: bool


class PoolLoad(_Open):
    pool: str
    waiting: int = Field(description="Leads on the pool's capacity waiting list.")
    oldest_wait_seconds: float | None
    overflows_week: int
    overflows_by_outcome: dict[str, int]


class LoadView(_Open):
    now: str
    roster_known: bool
    reps: list[RepLoad]
    pools: list[PoolLoad]


class LeadList(_Open):
    total: int
    rows: list[dict[str, Any]]


class LiveView(_Open):
    now: str
    limbo_after_minutes: float
    limbo: LeadList = Field(description="Unowned past the limbo time, oldest first (age_seconds).")
    at_risk: LeadList = Field(description="Live SLA warnings, earliest due first (seconds_left < 0: overdue).")


class LeadsPage(LeadList):
    page: int
    per_page: int
