"""Scoring's one settings object (environment variables)."""

from __future__ import annotations

from pathlib import Path

from leadbridge_events.settings import BackboneSettings
from pydantic import Field

from .model_file import default_model_path


class ScoringSettings(BackboneSettings):
    host: str = Field(default="0.0.0.0", validation_alias="SCORING_HOST")
    port: int = Field(default=8002, ge=1, le=65535, validation_alias="SCORING_PORT")
    model_path: Path = Field(default_factory=default_model_path, validation_alias="SCORING_MODEL_PATH")
    group_id: str = Field(default="scoring", validation_alias="SCORING_GROUP_ID")
