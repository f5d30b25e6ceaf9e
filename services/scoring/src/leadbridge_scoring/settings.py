"""Scoring's one settings object (environment variables ``SCORING_*`` and the shared backbone names)."""

from __future__ import annotations

from pathlib import Path

from leadbridge_events.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from .model_file import default_model_path


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_")  # SCORING_PORT, SCORING_GROUP_ID, ...

    port: int = Field(default=8002, ge=1, le=65535)
    model_path: Path = Field(default_factory=default_model_path)
