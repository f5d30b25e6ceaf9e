"""The intake service's one typed settings object (environment variables ``INTAKE_*`` and the shared backbone
names, validated at start)."""

from __future__ import annotations

from leadbridge_events.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class IntakeSettings(ServiceSettings):
    """Everything intake reads from its environment. Pass values by field name in tests."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_")  # INTAKE_PORT, INTAKE_WORKERS, ...

    port: int = Field(default=8001, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description=(
        "uvicorn worker processes. 1 by default: on a small machine shared with the other services and the "
        "brokers, a second worker adds no CPU. With N workers each enforces 1/N of the per-key rate limit, "
        "and /metrics shows the counters of whichever worker answers the scrape."))
    # browsers' form posts
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to post forms (CORS).")
    thank_you_url: str | None = Field(default=None, description="Where a browser's form post is redirected (303).")
    honeypot_field: str = Field(default="_hp", description="A hidden form field bots fill in and humans do not.")
    # abuse limits
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_per_minute: float = Field(default=600, gt=0, description="Per API key, sustained.")
    rate_limit_burst: int = Field(default=60, ge=1, description="Per API key, burst.")
    webhook_rate_limit_per_minute: float = Field(default=1200, gt=0, description="Per source IP, sustained.")
    webhook_rate_limit_burst: int = Field(default=200, ge=1, description="Per source IP, burst.")
    unknown_key_cache_seconds: float = Field(default=2, ge=0, description=(
        "How long an unknown API key is remembered as unknown, so a flood of made-up keys does not reach the "
        "database; a key created in this process is known at once."))
    api_key_cache_seconds: float = Field(default=5, ge=0, description="How long a looked-up API key is reused; "
                                         "a revocation made elsewhere (CLI, another worker) applies within it.")
    # dedupe
    repeat_window_hours: float = Field(default=24 * 30, ge=0,
                                       description="Same email/phone within this window: activity, not a new lead.")
    # group commit: concurrent captures share one transaction (one durable commit) - see group_commit.py
    group_commit_window_ms: float = Field(default=2.0, ge=0, le=100, description=(
        "While a group is committing, how long the next group gathers captures (milliseconds); when none is, "
        "a capture commits at once."))
    group_commit_max: int = Field(default=256, ge=0, le=10000, description=(
        "Most captures in one transaction; 0 turns group commit off (one transaction per capture)."))
    default_phone_region: str = Field(default="US", description="Region for phone numbers without a country code.")
    # Meta Lead Ads
    meta_verify_token: str | None = None
    meta_app_secret: str | None = None
    meta_access_token: str = ""
    meta_graph_base_url: str = "https://graph.facebook.com/v21.0"
    # Google Ads lead forms: form id -> google_key ("*" for any form)
    google_keys: dict[str, str] = Field(default_factory=dict)
    # LinkedIn Lead Gen
    linkedin_client_secret: str | None = None
    linkedin_access_token: str = ""
    linkedin_api_base_url: str = "https://api.linkedin.com/rest"
    # the retrying platform fetcher
    fetch_timeout_seconds: float = Field(default=10, gt=0)
    fetch_retry_base_seconds: float = Field(default=1.0, gt=0)
    fetch_retry_max_seconds: float = Field(default=300, gt=0)
    fetch_poll_seconds: float = Field(default=2.0, gt=0)
