"""HubSpot adapter: routed leads become contacts (CRM v3 batch upsert by email), owned by the rep, with a note.

Requests (documented shapes, https://developers.hubspot.com/docs/api/crm/contacts):

- ``POST /crm/v3/objects/contacts/batch/upsert`` ``{"inputs": [{"idProperty": "email", "id": <email>,
  "properties": {...}}]}`` -> 200 ``{"status": "COMPLETE", "results": [{"id", "properties": {"email", ...}}]}``
  or 207 with ``errors`` for the inputs that failed;
- ``POST /crm/v3/objects/notes/batch/create``: the routing reason as a note associated with the contact
  (association type 202, note to contact);
- ``GET /crm/v3/objects/{calls|emails|meetings}/{id}?properties=...&associations=contacts``: the
  engagement an inbound webhook announced (webhooks carry only ids).

Private-app token (``Authorization: Bearer``); a token bucket per portal; a 429 drains the bucket for its
``Retry-After`` (or a second) and the batch is retried on the schedule.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from .config import HubSpotPortal
from .policy import Outcome, TokenBucket, http_outcome, parse_retry_after
from .queue import Delivery

NOTE_TO_CONTACT = 202
CONTACT_BATCH_LIMIT = 100
ENGAGEMENT_TYPES = {"0-48": "calls", "0-49": "emails", "0-47": "meetings"}
ENGAGEMENT_PROPERTIES = {
    "calls": "hs_timestamp,hubspot_owner_id,hs_call_disposition,hs_call_status,hs_call_direction",
    "emails": "hs_timestamp,hubspot_owner_id,hs_email_direction,hs_email_status",
    "meetings": "hs_timestamp,hubspot_owner_id,hs_meeting_outcome,hs_meeting_start_time",
}


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name:
        return None, None
    first, _, last = name.strip().partition(" ")
    return first or None, last or None


def contact_properties(data: dict[str, Any], portal: HubSpotPortal) -> dict[str, str]:
    profile = data.get("profile") or {}
    contact = profile.get("contact") or {}
    first, last = _split_name(contact.get("name"))
    props = {"email": contact.get("email"), "firstname": first, "lastname": last, "phone": contact.get("phone"),
             "company": profile.get("company"), "jobtitle": profile.get("job_title"),
             "country": profile.get("country"),
             "hubspot_owner_id": (data.get("assignee_crm_owner_ids") or {}).get("hubspot")}
    if data.get("attempt", 1) == 1:  # a re-route changes the owner, not the status the rep may have set
        props["hs_lead_status"] = portal.lead_status
    return {k: str(v) for k, v in props.items() if v not in (None, "")}


def note_body(data: dict[str, Any]) -> str:
    who = data.get("assignee_name") or data.get("assignee_id") or "nobody"
    text = f"LeadBridge routed this lead to {who} (team {data.get('team') or data.get('pool') or '-'}, " \
           f"attempt {data.get('attempt', 1)}): {data.get('reason', '')}"
    if data.get("score") is not None:
        text += f" Score {data['score']:g}" + (f", grade {data['grade']}" if data.get("grade") else "") + "."
    return text


class HubSpotClient:
    def __init__(self, name: str, portal: HubSpotPortal, http: httpx.AsyncClient) -> None:
        self.name = name
        self.destination = f"hubspot:{name}"
        self.portal = portal
        self._http = http
        self._bucket = TokenBucket(portal.requests_per_second, portal.burst)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        loop = asyncio.get_running_loop()
        wait = self._bucket.take(loop.time())
        if wait > 0:
            await asyncio.sleep(wait)
        resp = await self._http.request(method, self.portal.base_url.rstrip("/") + path,
                                        headers={"authorization": f"Bearer {self.portal.token}"}, **kwargs)
        if resp.status_code == 429:
            self._bucket.drain(loop.time(), parse_retry_after(resp.headers.get("retry-after"),
                                                              datetime.now(UTC)) or 1.0)
        return resp

    async def send(self, batch: list[Delivery], now: datetime) -> dict[str, Outcome]:
        """Upsert the batch's contacts (one request) and add their routing notes (one more)."""
        outcomes: dict[str, Outcome] = {}
        inputs: dict[str, tuple[Delivery, dict[str, str]]] = {}
        for d in batch[:CONTACT_BATCH_LIMIT]:
            props = contact_properties(d.data, self.portal)
            email = props.get("email", "").lower()
            if not email:
                outcomes[d.delivery_id] = Outcome(ok=False, skipped=True, error="no email: HubSpot upserts by email")
            elif email not in inputs:  # the same email twice in one batch: the second waits for the next one
                inputs[email] = (d, props)
        if not inputs:
            return outcomes
        try:
            resp = await self._request("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": [
                {"idProperty": "email", "id": email, "properties": props} for email, (_, props) in inputs.items()]})
        except httpx.TimeoutException:
            return {**outcomes, **{d.delivery_id: Outcome.unreachable("timed out") for d, _ in inputs.values()}}
        except httpx.HTTPError as exc:
            return {**outcomes, **{d.delivery_id: Outcome.unreachable(type(exc).__name__)
                                   for d, _ in inputs.values()}}
        if resp.status_code not in (200, 201, 207):
            failed = http_outcome(resp.status_code, resp.headers.get("retry-after"), now, error=_error(resp))
            return {**outcomes, **{d.delivery_id: failed for d, _ in inputs.values()}}
        body = resp.json()
        ids = {str((r.get("properties") or {}).get("email", "")).lower(): str(r["id"]) for r in body.get("results", [])}
        # HubSpot's messages may quote property values (personal data): keep the categories only
        errors = ", ".join(sorted({str(e.get("category", "error")) for e in body.get("errors", [])})) \
            or "not in the results"
        created = [(d, props, ids[email]) for email, (d, props) in inputs.items() if email in ids]
        for email, (d, _) in inputs.items():
            if email not in ids:
                outcomes[d.delivery_id] = Outcome(ok=False, status_code=resp.status_code, error=errors)
        if created:
            outcomes.update(await self._add_notes(created, now, resp.status_code))
        return outcomes

    async def _add_notes(self, created: list[tuple[Delivery, dict[str, str], str]], now: datetime,
                         upsert_status: int) -> dict[str, Outcome]:
        inputs = [{"properties": {"hs_timestamp": d.data.get("routed_at") or now.isoformat(),
                                  "hs_note_body": note_body(d.data),
                                  **({"hubspot_owner_id": p["hubspot_owner_id"]} if "hubspot_owner_id" in p else {})},
                   "associations": [{"to": {"id": contact_id}, "types": [
                       {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}]}]}
                  for d, p, contact_id in created]
        try:
            resp = await self._request("POST", "/crm/v3/objects/notes/batch/create", json={"inputs": inputs})
            failure = None if resp.status_code in (200, 201) else http_outcome(
                resp.status_code, resp.headers.get("retry-after"), now, error="note: " + _error(resp))
        except httpx.HTTPError as exc:
            failure = Outcome.unreachable(f"note: {type(exc).__name__}")
        if failure is not None:  # the upsert is idempotent: the whole delivery is retried
            return {d.delivery_id: failure for d, _, _ in created}
        return {d.delivery_id: Outcome.delivered(upsert_status, record_id=cid, owner_id=p.get("hubspot_owner_id"))
                for d, p, cid in created}

    async def engagement(self, object_type_id: str, object_id: str) -> dict[str, Any] | None:
        """The call / email / meeting an inbound event names (None: not an engagement type we map)."""
        kind = ENGAGEMENT_TYPES.get(object_type_id)
        if kind is None:
            return None
        resp = await self._request("GET", f"/crm/v3/objects/{kind}/{object_id}", params={
            "properties": ENGAGEMENT_PROPERTIES[kind], "associations": "contacts"})
        if resp.status_code == 404:
            return {"kind": kind, "missing": True}
        resp.raise_for_status()
        return {"kind": kind, **resp.json()}


def _error(resp: httpx.Response) -> str:
    """``HTTP 429 RATE_LIMIT``: the status and HubSpot's error category (its messages may quote personal data)."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, ValueError):
        return f"HTTP {resp.status_code}"
    category = (body.get("category") or body.get("errorType")) if isinstance(body, dict) else None
    return f"HTTP {resp.status_code}" + (f" {category}" if category else "")
