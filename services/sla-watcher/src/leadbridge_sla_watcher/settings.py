"""The watcher's one typed settings object (environment variables)."""

from __future__ import annotations

import json
from pathlib import Path

from leadbridge_events.settings import BackboneSettings
from pydantic import Field

from .policies import SlaConfig


class WatcherSettings(BackboneSettings):
    host: str = Field(default="0.0.0.0", validation_alias="SLA_WATCHER_HOST")
    port: int = Field(default=8004, validation_alias="SLA_WATCHER_PORT")
    policies_file: Path | None = Field(
        default=None, validation_alias="SLA_POLICIES_FILE",
        description="YAML or JSON SlaConfig (policies, overrides, calendars); built-in defaults if unset.",
    )
    timer_poll_seconds: float = Field(default=0.2, gt=0, le=1, validation_alias="SLA_TIMER_POLL_SECONDS")
    timer_batch_size: int = Field(default=500, ge=1, validation_alias="SLA_TIMER_BATCH_SIZE")
    timer_workers: int = Field(default=2, ge=1, le=16, validation_alias="SLA_TIMER_WORKERS",
                               description="Claiming loops side by side: one batch's commit overlaps the next's work.")
    gauge_refresh_seconds: float = Field(default=15, gt=0, validation_alias="SLA_GAUGE_REFRESH_SECONDS")

    def sla_config(self) -> SlaConfig:
        if self.policies_file is None:
            return SlaConfig()
        raw = self.policies_file.read_text()
        if self.policies_file.suffix in (".yaml", ".yml"):
            import yaml

            return SlaConfig.model_validate(yaml.safe_load(raw) or {})
        return SlaConfig.model_validate(json.loads(raw))
