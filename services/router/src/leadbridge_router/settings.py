"""The router's one typed settings object (environment variables ``ROUTER_*`` and the shared backbone names)."""

from __future__ import annotations

from leadbridge_events.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_")  # ROUTER_PORT, ROUTER_GROUP_ID, ...

    port: int = Field(default=8003, ge=1, le=65535)
    roster_file: str | None = Field(
        default=None, description="YAML/JSON roster imported at start when the database has no teams yet.",
    )
    hold_poll_seconds: float = Field(default=30.0, gt=0)
