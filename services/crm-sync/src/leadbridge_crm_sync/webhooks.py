"""Signed outbound webhooks, per the Standard Webhooks specification (https://www.standardwebhooks.com).

Each delivery is one POST of ``{"type", "timestamp", "data"}`` JSON with the headers ``webhook-id`` (stable
across retries: receivers dedupe on it), ``webhook-timestamp`` (this attempt, Unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, signed by the ``standardwebhooks``
package). During a secret rotation's grace period the signature header carries both the new and the old
signature, space separated, so a receiver can switch secrets at its own pace.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from .policy import Outcome, http_outcome
from .queue import Delivery

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def body_of(delivery: Delivery) -> bytes:
    event = delivery.payload["event"]
    message = {"type": delivery.event_type, "timestamp": event["time"],
               "data": {**delivery.data, "event_id": event["id"], "lead_id": delivery.lead_id}}
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(msg_id: str, body: bytes, now: datetime, secrets_in_use: list[str]) -> dict[str, str]:
    now = now.astimezone(UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, now, body.decode()) for s in secrets_in_use)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signatures,
            "content-type": "application/json", "user-agent": "LeadBridge-crm-sync/1"}


def signing_secrets(subscription: Any, now: datetime) -> list[str]:
    keys = [subscription.secret]
    if subscription.previous_secret and subscription.previous_secret_until and subscription.previous_secret_until > now:
        keys.append(subscription.previous_secret)
    return keys


async def post(client: httpx.AsyncClient, url: str, delivery: Delivery, keys: list[str], now: datetime) -> Outcome:
    body = body_of(delivery)
    try:
        resp = await client.post(url, content=body, headers=signed_headers(delivery.delivery_id, body, now, keys))
    except httpx.TimeoutException:
        return Outcome.unreachable("timed out")
    except httpx.HTTPError as exc:
        return Outcome.unreachable(f"{type(exc).__name__}")
    if 200 <= resp.status_code < 300:
        return Outcome.delivered(resp.status_code)
    if resp.status_code == 410:  # Standard Webhooks: Gone means "stop sending": dead-letter, do not retry
        return Outcome(ok=False, status_code=410, error="endpoint answered 410 Gone", permanent=True)
    # a receiver's 4xx is usually its own deployment problem: keep the endpoint waiting, retry on schedule
    return http_outcome(resp.status_code, resp.headers.get("retry-after"), now, record_level_4xx=False)
