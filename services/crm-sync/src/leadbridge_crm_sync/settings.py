"""crm-sync's one settings object (environment variables ``CRM_SYNC_*`` and the shared backbone names);
the destinations live in its YAML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from leadbridge_events.settings import ServiceSettings
from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

# Standard Webhooks' (Svix's) schedule: the attempt after the first waits 5 s, then 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h: 27.6 hours in all before a delivery goes to its endpoint's dead letter.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class CrmSyncSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SYNC_")  # CRM_SYNC_PORT, CRM_SYNC_CONFIG_FILE, ...

    port: int = Field(default=8006, ge=1, le=65535)
    # a CRM call takes longer than this: the broker holds crm-sync's fetches up to 200 ms, so a trickle of
    # routings is queued a handful per transaction, not one each (0: as soon as there; docs/backbone.md)
    consumer_linger_ms: int = Field(default=200, ge=0, le=10000)
    config_file: Path | None = Field(
        default=None,
        description="YAML with the HubSpot portals, Salesforce orgs and which teams deliver where; "
                    "unset: signed webhooks only.",
    )
    admin_token: str | None = Field(
        default=None,
        description="Bearer token for the subscription and destination API; unset: that API answers 503.",
    )
    # NoDecode: the environment's value reaches _parse_schedule as it is, so the comma form works there too
    retry_schedule_seconds: Annotated[tuple[float, ...], NoDecode] = Field(
        default=DEFAULT_RETRY_SCHEDULE,
        description="Waits before each retry (JSON list); the delivery is dead-lettered after the last.",
    )
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    max_retry_after_seconds: float = Field(
        default=3600, gt=0,
        description="A Retry-After longer than this is capped (a receiver cannot park us for a week).",
    )
    pause_after_seconds: float = Field(
        default=6 * 3600, gt=0,
        description="An endpoint failing without a single success for this long is paused (and alerted).",
    )
    secret_rotation_grace_seconds: float = Field(
        default=24 * 3600, ge=0,
        description="After a rotation, deliveries are signed with the old secret too for this long.",
    )
    sender_poll_seconds: float = Field(default=0.5, gt=0)
    sender_batch_size: int = Field(default=100, ge=1, le=100)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    gauge_refresh_seconds: float = Field(default=5.0, gt=0)
    retention_days: float = Field(
        default=30, gt=0,
        description="Finished deliveries (their payload holds the prospect's contact details) and their attempt "
                    "log are deleted this long after they finished; dead letters are kept until replayed.",
    )
    inbound_max_age_seconds: float = Field(
        default=300, gt=0,
        description="Signed inbound webhooks (HubSpot) older than this are rejected as replays.",
    )

    @field_validator("retry_schedule_seconds", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        """A JSON list or comma-separated seconds: ``[5, 300, 1800]`` or ``5,300,1800``."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",") if v.strip()]
        return value

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(v < 0 for v in value):
            raise ValueError("the retry schedule is a non-empty list of non-negative seconds")
        return value
