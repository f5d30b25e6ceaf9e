"""The destinations file (``CRM_SYNC_CONFIG_FILE``): HubSpot portals, Salesforce orgs, and which team goes where.

Validated when the service starts; a bad file stops it with a message naming the file and the problem.
Secrets are never in the file itself in production: ``*_env`` names the environment variable holding them
(``token`` / ``client_secret`` inline are accepted for demos and tests).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from leadbridge_contracts.events import FollowUpOutcome
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """The destinations file is unusable; the message says which file and why."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _secret(inline: str | None, env: str | None, what: str) -> str | None:
    if inline:
        return inline
    if env:
        value = os.environ.get(env)
        if not value:
            raise ValueError(f"{what}: environment variable {env} is not set")
        return value
    return None


class HubSpotPortal(_Model):
    portal_id: int = Field(description="HubSpot account (portal) id; inbound events must carry it.")
    base_url: str = "https://api.hubapi.com"
    token: str | None = Field(default=None, description="Private app access token (demo/test only).")
    token_env: str | None = Field(default=None, description="Environment variable with the private app token.")
    client_secret: str | None = Field(default=None, description="App client secret (demo/test only).")
    client_secret_env: str | None = Field(default=None, description="Env variable with the app's client secret.")
    webhook_url: str | None = Field(default=None, description="The URL HubSpot calls, exactly as registered "
                                    "(signature v3 covers it); default: the URL as this service sees it.")
    lead_status: str = Field(default="NEW", description="hs_lead_status set on a routed lead.")
    requests_per_second: float = Field(default=10.0, gt=0, description="Token bucket refill (private apps: 100/10 s).")
    burst: int = Field(default=10, ge=1, description="Token bucket size.")

    @model_validator(mode="after")
    def _resolve(self) -> HubSpotPortal:
        token = _secret(self.token, self.token_env, "token")
        if not token:
            raise ValueError("a HubSpot portal needs token_env (its private app access token)")
        secret = _secret(self.client_secret, self.client_secret_env, "client_secret")
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "client_secret", secret)
        return self


DEFAULT_SF_STATUS_OUTCOMES = {
    "Working - Contacted": FollowUpOutcome.CONNECTED,
    "Closed - Converted": FollowUpOutcome.QUALIFIED,
    "Closed - Not Converted": FollowUpOutcome.REJECTED,
}


class SalesforceOrg(_Model):
    organization_id: str = Field(min_length=15, max_length=18, description="00D...: outbound messages must carry it.")
    login_url: str = Field(description="My Domain URL; the token endpoint is <login_url>/services/oauth2/token.")
    client_id: str
    client_secret: str | None = None
    client_secret_env: str | None = None
    api_version: str = "v60.0"
    external_id_field: str = "LeadBridge_Id__c"
    lead_source: str = "LeadBridge"
    status: str = Field(default="Open - Not Contacted", description="Lead Status set on a routed lead.")
    status_outcomes: dict[str, FollowUpOutcome] = Field(
        default_factory=lambda: dict(DEFAULT_SF_STATUS_OUTCOMES),
        description="Lead Status values that report an outcome back (others are ignored).",
    )

    @model_validator(mode="after")
    def _resolve(self) -> SalesforceOrg:
        secret = _secret(self.client_secret, self.client_secret_env, "client_secret")
        if not secret:
            raise ValueError("a Salesforce org needs client_secret_env (its connected app's consumer secret)")
        object.__setattr__(self, "client_secret", secret)
        return self


class CrmConfig(_Model):
    hubspot: dict[str, HubSpotPortal] = Field(default_factory=dict)
    salesforce: dict[str, SalesforceOrg] = Field(default_factory=dict)
    teams: dict[str, list[str]] = Field(
        default_factory=dict,
        description="team -> destinations ('hubspot:<name>', 'salesforce:<name>'); '*' applies to every team.",
    )

    @model_validator(mode="after")
    def _known_destinations(self) -> CrmConfig:
        known = self.destinations()
        for team, targets in self.teams.items():
            for target in targets:
                if target not in known:
                    raise ValueError(f"team {team!r} delivers to {target!r}, which is not configured "
                                     f"(known: {', '.join(sorted(known)) or 'none'})")
        return self

    def destinations(self) -> set[str]:
        return {f"hubspot:{n}" for n in self.hubspot} | {f"salesforce:{n}" for n in self.salesforce}

    def destinations_for_team(self, team: str | None) -> list[str]:
        targets = list(self.teams.get(team or "", [])) + list(self.teams.get("*", []))
        return list(dict.fromkeys(targets))


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(text: str, path: Path) -> str:
    """``${NAME}`` is replaced by the environment variable (e.g. a base URL that differs per environment)."""
    missing = sorted({m for m in _VARIABLE.findall(text) if m not in os.environ})
    if missing:
        raise ConfigError(f"crm-sync config {path}: environment variable(s) {', '.join(missing)} not set")
    return _VARIABLE.sub(lambda m: os.environ[m.group(1)], text)


def load_config(path: Path | None) -> CrmConfig:
    if path is None:
        return CrmConfig()
    try:
        raw: Any = yaml.safe_load(_expand(Path(path).read_text(), path))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"crm-sync config {path}: cannot read it: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"crm-sync config {path}: expected a mapping with hubspot, salesforce and teams")
    try:
        return CrmConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"crm-sync config {path}: {problems}") from exc
