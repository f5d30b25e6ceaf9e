"""Webhook signatures and handshakes, and API key hashing. Pure: bytes and secrets in, answers out."""

from __future__ import annotations

import hashlib
import hmac
import secrets


class SignatureProblem(Exception):
    """Why a request is not authentic; ``status`` is 401 (missing) or 403 (wrong)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_meta_signature(secret: str, body: bytes, header: str | None) -> None:
    """Meta's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``."""
    if not header:
        raise SignatureProblem(401, "missing X-Hub-Signature-256 header")
    algo, _, digest = header.partition("=")
    if algo.strip().lower() != "sha256" or not digest:
        raise SignatureProblem(401, "X-Hub-Signature-256 must look like sha256=<hex digest>")
    if not hmac.compare_digest(hmac_sha256_hex(secret, body), digest.strip().lower()):
        raise SignatureProblem(403, "X-Hub-Signature-256 does not match the body (wrong app secret or altered body)")


def meta_handshake(verify_token: str, mode: str | None, token: str | None, challenge: str | None) -> str:
    """The challenge to echo when Meta's subscription handshake is valid."""
    if mode != "subscribe" or challenge is None:
        raise SignatureProblem(401, "expected hub.mode=subscribe and a hub.challenge")
    if token is None or not hmac.compare_digest(token, verify_token):
        raise SignatureProblem(403, "hub.verify_token does not match the configured verify token")
    return challenge


def verify_linkedin_signature(client_secret: str, body: bytes, header: str | None) -> None:
    """LinkedIn's ``X-LI-Signature``: hex HMAC-SHA256 of the raw body with the app's client secret."""
    if not header:
        raise SignatureProblem(401, "missing X-LI-Signature header")
    digest = header.strip().lower().removeprefix("hmacsha256=")
    if not hmac.compare_digest(hmac_sha256_hex(client_secret, body), digest):
        raise SignatureProblem(403, "X-LI-Signature does not match the body (wrong client secret or altered body)")


def linkedin_challenge(client_secret: str, challenge_code: str) -> dict[str, str]:
    """LinkedIn's validation: echo ``challengeCode`` with its HMAC-SHA256 as ``challengeResponse``."""
    return {"challengeCode": challenge_code,
            "challengeResponse": hmac_sha256_hex(client_secret, challenge_code.encode())}


def check_google_key(keys: dict[str, str], form_id: str | None, given: str | None) -> None:
    """Google Ads sends the ``google_key`` configured for the form in every lead's body."""
    if not given:
        raise SignatureProblem(401, "missing google_key in the body")
    expected = keys.get(str(form_id)) if form_id is not None else None
    expected = expected or keys.get("*")
    if expected is None:
        raise SignatureProblem(403, f"no google_key is configured for form {form_id}")
    if not hmac.compare_digest(expected, given):
        raise SignatureProblem(403, f"google_key does not match the key configured for form {form_id}")


# -- API keys --------------------------------------------------------------------------------------

KEY_PREFIX = "lb_"


def new_api_key() -> tuple[str, str]:
    """A new secret key and its public id (the first characters, safe to log and show)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:11]


def hash_api_key(key: str) -> str:
    """Keys are random and long, so a plain SHA-256 is enough (no salt/stretching needed)."""
    return hashlib.sha256(key.encode()).hexdigest()
