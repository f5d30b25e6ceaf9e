"""Insights' one settings object (environment variables)."""

from __future__ import annotations

from pydantic import Field

from leadbridge_events.settings import BackboneSettings


class InsightsSettings(BackboneSettings):
    host: str = Field(default="0.0.0.0", validation_alias="INSIGHTS_HOST")
    port: int = Field(default=8005, ge=1, le=65535, validation_alias="INSIGHTS_PORT")
    group_id: str = Field(default="insights", validation_alias="INSIGHTS_GROUP_ID")
    limbo_after_minutes: float = Field(
        default=60, gt=0, validation_alias="INSIGHTS_LIMBO_AFTER_MINUTES",
        description="A lead captured this long ago and neither routed nor nurtured counts as lead limbo.",
    )
