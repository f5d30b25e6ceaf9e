"""The watcher's one typed settings object (environment variables ``SLA_*`` and the shared backbone names)."""

from __future__ import annotations

import json
from pathlib import Path

from leadbridge_events.settings import ServiceSettings
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from .policies import SlaConfig


class WatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SLA_")  # SLA_POLICIES_FILE, SLA_TIMER_POLL_SECONDS, ...

    # the names deployments have used from the start (the prefix alone would make them SLA_HOST / SLA_PORT)
    host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("SLA_WATCHER_HOST", "SLA_HOST"))
    port: int = Field(default=8004, ge=1, le=65535, validation_alias=AliasChoices("SLA_WATCHER_PORT", "SLA_PORT"))
    policies_file: Path | None = Field(
        default=None,
        description="YAML or JSON SlaConfig (policies, overrides, calendars); built-in defaults if unset.",
    )
    timer_poll_seconds: float = Field(default=0.2, gt=0, le=1)
    timer_batch_size: int = Field(default=500, ge=1)
    timer_workers: int = Field(default=2, ge=1, le=16,
                               description="Claiming loops side by side: one batch's commit overlaps the next's work.")
    gauge_refresh_seconds: float = Field(default=15, gt=0)

    def sla_config(self) -> SlaConfig:
        if self.policies_file is None:
            return SlaConfig()
        raw = self.policies_file.read_text()
        if self.policies_file.suffix in (".yaml", ".yml"):
            import yaml

            return SlaConfig.model_validate(yaml.safe_load(raw) or {})
        return SlaConfig.model_validate(json.loads(raw))
