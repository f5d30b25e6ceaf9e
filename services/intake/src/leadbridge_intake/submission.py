"""The lead submission: what a form, a site's backend or an ad platform tells us about a person.

Pure: validation and normalization of one submission into the event contract's ``LeadProfile``.
"""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.events import (
    COMPANY_SIZE_MAX,
    EMAIL_MAX,
    FIELD_KEY_MAX,
    FIELD_VALUE_MAX,
    FIELDS_MAX,
    PHONE_MAX,
    TEXT_MAX,
    TOKEN_MAX,
    Contact,
    LeadProfile,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .normalize import (
    InvalidValue,
    normalize_country,
    normalize_email,
    normalize_language,
    normalize_phone,
    normalize_token,
    parse_bool,
    parse_company_size,
    strip_nul,
)

KNOWN_CHANNELS = frozenset({"paid", "organic", "social", "seo", "mail", "referral", "event", "partner", "direct",
                            "display", "affiliate"})
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_Short = Field(default=None, max_length=TEXT_MAX)  # the limits are the event contract's (one set)
# validation context: the input is known to hold no NUL character, so the recursive strip (a third of the
# submission's validation) is skipped; ``nul_free(raw)`` tells it of a JSON body
NUL_FREE = "nul_free"


def nul_free(raw: bytes) -> bool:
    """Whether JSON text ``raw`` cannot decode to a string with a NUL: in UTF-8 (UTF-16 and UTF-32 have NUL
    bytes) a NUL is only written as the escape \\u0000 (strict JSON has no raw control characters)."""
    return b"\x00" not in raw and b"\\u0000" not in raw


class LeadSubmission(BaseModel):
    """A lead as posted to ``POST /v1/leads``: email and/or phone, plus what is known about them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(default=None, max_length=EMAIL_MAX, description="At least one of email and phone.")
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. DE; the region of local phones.")
    phone: str | None = Field(default=None, max_length=PHONE_MAX, description="Any common format; E.164 preferred.")
    name: str | None = _Short
    first_name: str | None = _Short
    last_name: str | None = _Short
    company: str | None = _Short
    job_title: str | None = _Short
    company_size: int | str | None = Field(default=None, description=(
        f"Employees: 250, '51-200' or '1000+'; 0 to {COMPANY_SIZE_MAX:,}."))
    industry: str | None = _Short
    language: str | None = Field(default=None, description="ISO 639-1, e.g. en.")
    channel: str | None = Field(default=None, max_length=TOKEN_MAX,
                                description="paid, organic, social, seo, mail, referral, event, partner, ...")
    campaign: str | None = _Short
    form_type: str | None = Field(default=None, max_length=TOKEN_MAX,
                                  description="demo_request, pricing, contact, survey, whitepaper_download, webinar, ...")
    consent: bool | None = Field(default=None, description="Marketing consent given on the form.")
    utm: dict[str, str] = Field(default_factory=dict, description="UTM parameters (utm_source, utm_medium, ...).")
    custom: dict[str, str] = Field(default_factory=dict, description="Free custom fields.")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get(NUL_FREE):  # the caller knows there is none (a JSON body: NUL_FREE)
            return data
        return strip_nul(data)

    # normalized in validators (raise -> field-level 422)
    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return normalize_email(v) if v else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None, info: ValidationInfo) -> str | None:
        return normalize_phone(v, info.data.get("country") or info.context and info.context.get("region")) if v else None

    @field_validator("company_size")
    @classmethod
    def _size(cls, v: int | str | None) -> int | None:
        size = parse_company_size(v)
        if size is not None and size > COMPANY_SIZE_MAX:
            raise InvalidValue(f"company size must be at most {COMPANY_SIZE_MAX:,}")
        return size

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        return normalize_country(v)

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        return normalize_language(v)

    @field_validator("channel", "form_type")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        return normalize_token(v)

    @field_validator("utm", "custom")
    @classmethod
    def _bounded(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > FIELDS_MAX:
            raise ValueError(f"at most {FIELDS_MAX} entries")
        for key, value in v.items():
            if len(key) > FIELD_KEY_MAX or len(value) > FIELD_VALUE_MAX:
                raise ValueError(f"keys are at most {FIELD_KEY_MAX} and values at most {FIELD_VALUE_MAX} characters")
        return v

    @model_validator(mode="after")
    def _contact(self) -> LeadSubmission:
        if not self.email and not self.phone:
            raise ValueError("email or phone is required (at least one of them)")
        if not self.name and (self.first_name or self.last_name):
            self.name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return self

    def profile(self, *, source: str | None, default_region: str | None = None, is_test: bool = False) -> LeadProfile:
        return LeadProfile(
            contact=Contact(email=self.email, phone=self.phone, name=self.name),
            company=self.company, job_title=self.job_title,
            company_size=self.company_size,  # type: ignore[arg-type]  # _size made it an int (or None)
            industry=self.industry, country=self.country, language=self.language, channel=self.channel,
            campaign=self.campaign, form_type=self.form_type, source=source, consent=self.consent,
            utm=dict(self.utm), custom=dict(self.custom), is_test=is_test,
        )


FORM_CONTROL_FIELDS = frozenset({"api_key", "_redirect"})
_FIELDS = set(LeadSubmission.model_fields) - {"utm", "custom"}


def from_flat_fields(fields: dict[str, str], *, ignore: frozenset[str] = FORM_CONTROL_FIELDS) -> dict[str, Any]:
    """A flat key/value form (HTML form, platform field data) as a ``LeadSubmission`` input dict.

    ``utm_*`` keys go to ``utm``; ``custom[x]``, ``custom.x`` and unknown keys go to ``custom``.
    """
    data: dict[str, Any] = {"utm": {}, "custom": {}}
    for key, value in fields.items():
        if key in ignore:
            continue
        lowered = key.strip().lower()
        if lowered in UTM_KEYS:
            data["utm"][lowered] = value
        elif lowered in _FIELDS:
            data[lowered] = value if value != "" else None
        elif lowered.startswith("custom[") and lowered.endswith("]"):
            data["custom"][key[7:-1]] = value
        elif lowered.startswith("custom."):
            data["custom"][key[7:]] = value
        else:
            data["custom"][key] = value
    if data.get("consent") is not None:
        try:
            data["consent"] = parse_bool(data["consent"])
        except InvalidValue:
            pass  # left as is: the model reports it
    return data


def channel_label(channel: str | None) -> str:
    """A bounded metric label for a channel (free text would explode the label set)."""
    if not channel:
        return "unknown"
    return channel if channel in KNOWN_CHANNELS else "other"
