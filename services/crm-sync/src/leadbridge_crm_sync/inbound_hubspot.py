"""HubSpot's webhooks in: the reps' calls, emails, meetings and lead-status changes become ``follow-up-logged``.

Verification (https://developers.hubspot.com/docs/api/webhooks/validating-requests): ``X-HubSpot-Signature-v3``
is base64(HMAC-SHA256(app client secret, method + URI + body + ``X-HubSpot-Request-Timestamp``)); a request
whose timestamp is more than 5 minutes old is rejected (a replay). Each event is deduplicated by HubSpot's
``eventId`` (HubSpot retries a batch that was not answered 2xx in time), and each engagement by its object
id (``follow_up_id``), so a touch counts once however often it is announced.

Events mapped (others are acknowledged and ignored):

- ``object.creation`` of calls (``0-48``), emails (``0-49``) and meetings (``0-47``): the engagement is
  fetched (webhooks carry only ids); its associated contact gives the lead, its ``hubspot_owner_id`` the rep;
- ``contact.propertyChange`` of ``hs_lead_status`` (an outcome, see ``LEAD_STATUS_OUTCOMES``) and of
  ``notes_last_contacted`` (a note: the engagement itself arrives as its own event).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from leadbridge_contracts.events import FollowUpLogged, FollowUpOutcome, TouchType

_NS = uuid.UUID("3e9b2a71-6c4d-4f1e-9a8b-5d7c0e2f1a93")
# HubSpot decodes these in the URI before signing (its docs list them); everything else stays encoded
_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")

CALL_DISPOSITIONS = {  # HubSpot's default call outcomes (hs_call_disposition ids)
    "f240bbac-87c9-4f6e-bf70-924b57d47db7": FollowUpOutcome.CONNECTED,
    "73a0d17f-1163-4015-bdd5-ec830791da20": FollowUpOutcome.NO_ANSWER,
    "b2cf5968-551e-4856-9783-52b3da59a7d0": FollowUpOutcome.NO_ANSWER,   # left voicemail
    "a4c4c377-d246-4b32-a13b-75a56a4cd0ff": FollowUpOutcome.NO_ANSWER,   # left live message
    "9d9162e7-6cf3-4944-bf63-4dff82258764": FollowUpOutcome.NO_ANSWER,   # busy
}
MEETING_OUTCOMES = {"SCHEDULED": FollowUpOutcome.MEETING_BOOKED, "RESCHEDULED": FollowUpOutcome.MEETING_BOOKED,
                    "COMPLETED": FollowUpOutcome.CONNECTED}
LEAD_STATUS_OUTCOMES: dict[str, tuple[FollowUpOutcome, str | None]] = {
    "ATTEMPTED_TO_CONTACT": (FollowUpOutcome.NO_ANSWER, None),
    "CONNECTED": (FollowUpOutcome.CONNECTED, None),
    "IN_PROGRESS": (FollowUpOutcome.ACCEPTED, None),
    "OPEN_DEAL": (FollowUpOutcome.ACCEPTED, None),
    "UNQUALIFIED": (FollowUpOutcome.REJECTED, "unqualified (HubSpot lead status)"),
    "BAD_TIMING": (FollowUpOutcome.REJECTED, "bad timing (HubSpot lead status)"),
}
TOUCH_OF_KIND = {"calls": TouchType.CALL, "emails": TouchType.EMAIL, "meetings": TouchType.MEETING}


class SignatureError(Exception):
    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


def signed_uri(url: str) -> str:
    for encoded in _DECODED:
        url = url.replace(encoded, unquote(encoded)).replace(encoded.lower(), unquote(encoded))
    return url


def signature_v3(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + signed_uri(url).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def verify(secret: str, method: str, url: str, body: bytes, headers: dict[str, str], now: datetime,
           max_age_seconds: float = 300.0) -> None:
    """Raise SignatureError unless the request is HubSpot's, signed with v3, and fresh."""
    signature = headers.get("x-hubspot-signature-v3")
    timestamp = headers.get("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        raise SignatureError("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required")
    try:
        sent_at = int(timestamp) / 1000.0
    except ValueError:
        raise SignatureError("X-HubSpot-Request-Timestamp is not milliseconds since the epoch") from None
    if now.timestamp() - sent_at > max_age_seconds:
        raise SignatureError("request timestamp is older than 5 minutes: rejected as a replay", stale=True)
    if not hmac.compare_digest(signature_v3(secret, method, url, body, timestamp), signature):
        raise SignatureError("X-HubSpot-Signature-v3 does not match")


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000.0, tz=UTC)
    except (TypeError, ValueError):
        return None


def _iso(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return _millis(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def engagement_contact_ids(engagement: dict[str, Any]) -> list[str]:
    contacts = ((engagement.get("associations") or {}).get("contacts") or {}).get("results") or []
    return [str(c["id"]) for c in contacts if "id" in c]


def engagement_follow_up(portal_id: int, event: dict[str, Any], engagement: dict[str, Any], lead_id: str,
                         actor: str | None, now: datetime) -> FollowUpLogged:
    kind = engagement["kind"]
    props = engagement.get("properties") or {}
    outcome = None
    if kind == "calls":
        outcome = CALL_DISPOSITIONS.get(str(props.get("hs_call_disposition") or ""))
    elif kind == "meetings":
        outcome = MEETING_OUTCOMES.get(str(props.get("hs_meeting_outcome") or "").upper())
    occurred = _iso(props.get("hs_timestamp")) or _millis(event.get("occurredAt")) or now
    return FollowUpLogged(
        lead_id=lead_id, follow_up_id=str(uuid.uuid5(_NS, f"hubspot:{portal_id}:{kind}:{event['objectId']}")),
        touch_type=TOUCH_OF_KIND[kind], actor=actor, occurred_at=occurred, logged_at=now, outcome=outcome,
        note=f"{kind[:-1]} logged in HubSpot")


def property_follow_up(portal_id: int, event: dict[str, Any], lead_id: str, actor: str | None,
                       now: datetime) -> FollowUpLogged | None:
    """A contact property change as a follow-up, or None for the values that report nothing."""
    name, value = event.get("propertyName"), str(event.get("propertyValue") or "")
    occurred = _millis(event.get("occurredAt")) or now
    follow_up_id = str(uuid.uuid5(_NS, f"hubspot:{portal_id}:event:{event['eventId']}"))
    if name == "hs_lead_status" and value.upper() in LEAD_STATUS_OUTCOMES:
        outcome, reason = LEAD_STATUS_OUTCOMES[value.upper()]
        return FollowUpLogged(lead_id=lead_id, follow_up_id=follow_up_id, touch_type=TouchType.NOTE, actor=actor,
                              occurred_at=occurred, logged_at=now, outcome=outcome, reason=reason,
                              note=f"HubSpot lead status {value.upper()}")
    if name == "notes_last_contacted":
        return FollowUpLogged(lead_id=lead_id, follow_up_id=follow_up_id, touch_type=TouchType.NOTE, actor=actor,
                              occurred_at=_iso(value) or occurred, logged_at=now,
                              note="last contacted (HubSpot)")
    return None


def needs_engagement(event: dict[str, Any]) -> bool:
    return event.get("subscriptionType") == "object.creation" and event.get("objectTypeId") in ("0-47", "0-48", "0-49")


def is_property_change(event: dict[str, Any]) -> bool:
    return event.get("subscriptionType") == "contact.propertyChange"
