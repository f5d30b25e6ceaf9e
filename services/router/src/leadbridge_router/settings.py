"""The router's one typed settings object (environment variables)."""

from __future__ import annotations

from leadbridge_events.settings import BackboneSettings
from pydantic import Field


class RouterSettings(BackboneSettings):
    port: int = Field(default=8003, validation_alias="ROUTER_PORT")
    host: str = Field(default="0.0.0.0", validation_alias="ROUTER_HOST")
    group_id: str = Field(default="router", validation_alias="ROUTER_GROUP_ID")
    roster_file: str | None = Field(
        default=None, validation_alias="ROUTER_ROSTER_FILE",
        description="YAML/JSON roster imported at start when the database has no teams yet.",
    )
    hold_poll_seconds: float = Field(default=30.0, gt=0, validation_alias="ROUTER_HOLD_POLL_SECONDS")
