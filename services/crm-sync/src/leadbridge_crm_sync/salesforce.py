"""Salesforce adapter: a routed lead is upserted as a Lead by the external id ``LeadBridge_Id__c`` (REST API).

- token: OAuth 2.0 client credentials, ``POST <login_url>/services/oauth2/token`` -> ``{"access_token",
  "instance_url", "token_type": "Bearer", ...}``; fetched lazily, refreshed once when a call answers 401
  (``INVALID_SESSION_ID``);
- upsert: ``PATCH <instance_url>/services/data/<v>/sobjects/Lead/LeadBridge_Id__c/<lead id>`` with
  ``OwnerId``, ``LeadSource``, ``Status`` and the contact fields -> 201 ``{"id", "success": true,
  "created": true}`` (created), 200 ``{..., "created": false}`` or 204 (updated). 400 / 404 / 300 (several
  Leads with that external id) concern the record; 401 after a refresh, 403 ``REQUEST_LIMIT_EXCEEDED``,
  429 and 5xx concern the org (the endpoint waits for the next probe).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from .config import SalesforceOrg
from .policy import Outcome, http_outcome
from .queue import Delivery

NOT_PROVIDED = "[not provided]"  # what Salesforce's own Web-to-Lead puts in required fields left empty
PER_ROUND = 25  # one request per Lead: keep the sender's transaction (and its row locks) short


def lead_fields(data: dict[str, Any], org: SalesforceOrg) -> dict[str, str]:
    """The Lead's fields; ``Status`` only on the first routing (a re-route must not reset the rep's status)."""
    profile = data.get("profile") or {}
    contact = profile.get("contact") or {}
    first, _, last = (contact.get("name") or "").strip().rpartition(" ")
    fields = {"FirstName": first or None, "LastName": last or NOT_PROVIDED,
              "Company": profile.get("company") or NOT_PROVIDED, "Email": contact.get("email"),
              "Phone": contact.get("phone"), "Title": profile.get("job_title"), "Country": profile.get("country"),
              "LeadSource": org.lead_source, "Status": org.status if data.get("attempt", 1) == 1 else None,
              "OwnerId": (data.get("assignee_crm_owner_ids") or {}).get("salesforce"),
              "Description": f"LeadBridge: {data.get('reason', '')}"[:32000]}
    return {k: v for k, v in fields.items() if v not in (None, "")}


class SalesforceClient:
    def __init__(self, name: str, org: SalesforceOrg, http: httpx.AsyncClient) -> None:
        self.name = name
        self.destination = f"salesforce:{name}"
        self.org = org
        self._http = http
        self._token: tuple[str, str] | None = None  # (access token, instance url)
        self._lock = asyncio.Lock()
        self.token_fetches = 0

    async def _fetch_token(self) -> tuple[str, str]:
        resp = await self._http.post(self.org.login_url.rstrip("/") + "/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": self.org.client_id,
            "client_secret": self.org.client_secret})
        self.token_fetches += 1
        if resp.status_code != 200:
            raise PermissionError(f"token endpoint answered HTTP {resp.status_code}")
        body = resp.json()
        return body["access_token"], body.get("instance_url") or self.org.login_url

    async def _token_for(self, stale: str | None = None) -> tuple[str, str]:
        async with self._lock:  # one refresh for all the requests that saw the same expired token
            if self._token is None or self._token[0] == stale:
                self._token = await self._fetch_token()
            return self._token

    async def _upsert(self, delivery: Delivery, token: str, instance: str) -> httpx.Response:
        path = (f"/services/data/{self.org.api_version}/sobjects/Lead/{self.org.external_id_field}/"
                f"{quote(delivery.lead_id, safe='')}")
        return await self._http.patch(instance.rstrip("/") + path, json=lead_fields(delivery.data, self.org),
                                      headers={"authorization": f"Bearer {token}"})

    async def upsert(self, delivery: Delivery, now: datetime) -> Outcome:
        try:
            token, instance = await self._token_for()
            resp = await self._upsert(delivery, token, instance)
            if resp.status_code == 401:  # the session expired: a fresh token, once
                token, instance = await self._token_for(stale=token)
                resp = await self._upsert(delivery, token, instance)
        except PermissionError as exc:
            return Outcome(ok=False, error=str(exc), endpoint_down=True)
        except httpx.TimeoutException:
            return Outcome.unreachable("timed out")
        except httpx.HTTPError as exc:
            return Outcome.unreachable(type(exc).__name__)
        owner = lead_fields(delivery.data, self.org).get("OwnerId")
        if resp.status_code in (200, 201):
            return Outcome.delivered(resp.status_code, record_id=resp.json().get("id"), owner_id=owner)
        if resp.status_code == 204:
            return Outcome.delivered(204, owner_id=owner)
        code = _error_code(resp)
        if resp.status_code == 403 and code != "REQUEST_LIMIT_EXCEEDED":
            return Outcome(ok=False, status_code=403, error=f"HTTP 403 {code}", permanent=False, endpoint_down=True)
        failure = http_outcome(resp.status_code, resp.headers.get("retry-after"), now,
                               error=f"HTTP {resp.status_code}" + (f" {code}" if code else ""))
        if resp.status_code in (300, 400, 404):  # this record can never be upserted as it is
            return Outcome(ok=False, status_code=resp.status_code, error=failure.error, permanent=True)
        return failure

    async def send(self, batch: list[Delivery], now: datetime) -> dict[str, Outcome]:
        """Upsert one Lead per delivery, in order; stop at the first sign the org is unwell."""
        outcomes: dict[str, Outcome] = {}
        for d in batch[:PER_ROUND]:
            outcome = await self.upsert(d, now)
            outcomes[d.delivery_id] = outcome
            if outcome.endpoint_down:
                break
        return outcomes


def _error_code(resp: httpx.Response) -> str | None:
    """Salesforce's errorCode (its messages may quote field values: personal data stays out)."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode")
    return None
