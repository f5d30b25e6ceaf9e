"""Normalization of contact data and profile values. Pure functions: plain values in, plain values out."""

from __future__ import annotations

import re

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email


class InvalidValue(ValueError):
    """A value that cannot be normalized; the message says why (without echoing personal data)."""


# the common case: an ASCII dot-atom at a plain ASCII host name under a letters-only TLD, which email-validator
# accepts unchanged but for case (its checks cost ~40 us of CPU per lead, a tenth of a capture); anything else
# (Unicode, quoting, "--", a special-use name, a length near a limit) is left to email-validator itself.
# test_unit_domain holds the two equal over generated addresses.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    """``value`` lower-cased when it is a plain address email-validator would accept as is, else None."""
    if len(value) > 254 or not _PLAIN_EMAIL.fullmatch(value):
        return None
    local, _, domain = value.lower().rpartition("@")
    if len(local) > 64 or len(domain) > 253 or "--" in domain:
        return None
    if any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE):
        return None
    return f"{local}@{domain}"


def normalize_email(raw: str) -> str:
    """Syntax-checked, lower-cased email address (no DNS look-up)."""
    value = raw.strip()
    if not value:
        raise InvalidValue("email is empty")
    return _plain_email(value) or validated_email(value)


def validated_email(value: str) -> str:
    """``normalize_email`` by email-validator alone (the reference of the plain-address shortcut)."""
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidValue(f"not a valid email address: {exc}") from None
    return result.normalized.lower()


def normalize_phone(raw: str, region: str | None = None) -> str:
    """E.164 phone number; numbers without a country code are read in ``region`` (ISO alpha-2)."""
    value = raw.strip()
    if not value:
        raise InvalidValue("phone is empty")
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, (region or "").upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidValue(f"not a phone number: {exc._msg}") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidValue("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_SIZE_RANGE = re.compile(r"^\s*(\d[\d,.]*)\s*(?:[-–to]+\s*(\d[\d,.]*)|\+)?\s*(?:employees)?\s*$", re.I)


def parse_company_size(raw: str | int | None) -> int | None:
    """Employee count from ``250``, ``"51-200"`` (lower bound), ``"1000+"`` or ``"10,000"``."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidValue("company size must be a number or a range like 51-200")
    if isinstance(raw, int):
        if raw < 0:
            raise InvalidValue("company size cannot be negative")
        return raw
    match = _SIZE_RANGE.match(str(raw))
    if not match:
        raise InvalidValue("company size must be a number or a range like 51-200")
    digits = re.sub(r"[,.]", "", match.group(1))
    if len(digits) > 9:
        raise InvalidValue("company size is too large")
    return int(digits)


_COUNTRY, _LANGUAGE, _NOT_TOKEN = re.compile(r"[A-Z]{2}"), re.compile(r"[a-z]{2}"), re.compile(r"[^a-z0-9]+")


def normalize_country(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip().upper()
    if not _COUNTRY.fullmatch(value):
        raise InvalidValue("country must be an ISO 3166-1 alpha-2 code such as DE or US")
    return value


def normalize_language(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower().replace("_", "-").split("-")[0]
    if not _LANGUAGE.fullmatch(value):
        raise InvalidValue("language must be an ISO 639-1 code such as en or de")
    return value


def normalize_token(raw: str | None) -> str | None:
    """Lower-case snake-ish token for enumerations like channel and form type ('Demo Request' -> demo_request)."""
    if raw is None or not raw.strip():
        return None
    return _NOT_TOKEN.sub("_", raw.strip().lower()).strip("_") or None


TRUTHY = {"1", "true", "yes", "on", "y", "checked"}
FALSY = {"0", "false", "no", "off", "n", ""}


def parse_bool(raw: str | bool | None) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in TRUTHY:
        return True
    if value in FALSY:
        return False
    raise InvalidValue("must be true or false")


def strip_nul(value: object) -> object:
    """Remove NUL characters (PostgreSQL text and JSONB cannot store them) from strings, recursively."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
