"""Insights' one settings object (environment variables)."""

from __future__ import annotations

from leadbridge_events.settings import BackboneSettings
from pydantic import Field, SecretStr


class InsightsSettings(BackboneSettings):
    host: str = Field(default="0.0.0.0", validation_alias="INSIGHTS_HOST")
    port: int = Field(default=8005, ge=1, le=65535, validation_alias="INSIGHTS_PORT")
    group_id: str = Field(default="insights", validation_alias="INSIGHTS_GROUP_ID")
    limbo_after_minutes: float = Field(
        default=60, gt=0, validation_alias="INSIGHTS_LIMBO_AFTER_MINUTES",
        description="A lead captured this long ago and neither routed nor nurtured counts as lead limbo.",
    )
    # the managers' page signs in through the organisation's OpenID Connect provider (see signin.py)
    oidc_issuer: str | None = Field(default=None, validation_alias="INSIGHTS_OIDC_ISSUER",
                                    description="The OpenID Connect provider; unset: the page needs a bearer token.")
    oidc_client_id: str = Field(default="leadbridge-insights", validation_alias="INSIGHTS_OIDC_CLIENT_ID")
    oidc_client_secret: SecretStr | None = Field(default=None, validation_alias="INSIGHTS_OIDC_CLIENT_SECRET",
                                                 description="Unset: a public client (PKCE only).")
    oidc_scopes: str = Field(default="openid", validation_alias="INSIGHTS_OIDC_SCOPES")
    public_url: str | None = Field(default=None, validation_alias="INSIGHTS_PUBLIC_URL",
                                   description="The page's address as browsers see it (for the redirect URI).")
    session_secret: SecretStr | None = Field(default=None, min_length=16, validation_alias="INSIGHTS_SESSION_SECRET",
                                             description="Signs session cookies; unset: a random one per process.")
    session_hours: float = Field(default=8, gt=0, le=24 * 7, validation_alias="INSIGHTS_SESSION_HOURS")
    cookie_secure: bool = Field(default=False, validation_alias="INSIGHTS_COOKIE_SECURE",
                                description="Set behind TLS: cookies only over HTTPS.")
