"""Insights' one settings object (environment variables ``INSIGHTS_*`` and the shared backbone names)."""

from __future__ import annotations

from leadbridge_events.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict


class InsightsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INSIGHTS_")  # INSIGHTS_PORT, INSIGHTS_GROUP_ID, ...

    port: int = Field(default=8005, ge=1, le=65535)
    # a read model may be a second behind: the broker holds insights' fetches for up to this long, so one batch
    # holds several events of each lead and its views row is written once for them (0: as soon as there)
    consumer_linger_ms: int = Field(default=1000, ge=0, le=10000)
    # ... and may fall behind while the cores are busy: it yields them to the routing path (``priority.py``)
    cpu_niceness: int = Field(default=10, ge=0, le=19)
    limbo_after_minutes: float = Field(
        default=60, gt=0,
        description="A lead captured this long ago and neither routed nor nurtured counts as lead limbo.",
    )
    # the managers' page signs in through the organisation's OpenID Connect provider (see signin.py)
    oidc_issuer: str | None = Field(default=None,
                                    description="The OpenID Connect provider; unset: the page needs a bearer token.")
    oidc_client_id: str = Field(default="leadbridge-insights")
    oidc_client_secret: SecretStr | None = Field(default=None,
                                                 description="Unset: a public client (PKCE only).")
    oidc_scopes: str = Field(default="openid")
    public_url: str | None = Field(default=None,
                                   description="The page's address as browsers see it (for the redirect URI).")
    session_secret: SecretStr | None = Field(default=None, min_length=16,
                                             description="Signs session cookies; unset: a random one per process.")
    session_hours: float = Field(default=8, gt=0, le=24 * 7)
    cookie_secure: bool = Field(default=False,
                                description="Set behind TLS: cookies only over HTTPS.")
