"""Local fakes of HubSpot's and Salesforce's APIs, from their documented request and response shapes.

Used by the tests, the end-to-end test and ``make demo``. Each fake can be told to fail: ``fail_next``
(a queue of (status, headers) answers, e.g. 429 with Retry-After, 503), ``delay_seconds`` (a slow API: the
client times out), ``down`` (every call 503). Nothing here is used in production.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class _Faults:
    def __init__(self) -> None:
        self.fail_next: deque[tuple[int, dict[str, str]]] = deque()
        self.delay_seconds = 0.0
        self.down = False
        self.requests: list[str] = []
        self.received_at: dict[str, float] = {}  # record key (email, external id) -> first write, epoch s

    async def injected(self, request: Request, body: Any) -> JSONResponse | None:
        self.requests.append(f"{request.method} {request.url.path}")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.down:
            return JSONResponse(body, status_code=503)
        if self.fail_next:
            status, headers = self.fail_next.popleft()
            return JSONResponse(body, status_code=status, headers=headers)
        return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeHubSpot(_Faults):
    """CRM v3 contacts batch upsert, notes batch create, engagement reads; private-app token auth."""

    def __init__(self, token: str = "pat-na1-fake", portal_id: int = 4242) -> None:
        super().__init__()
        self.token, self.portal_id = token, portal_id
        self.contacts: dict[str, dict[str, Any]] = {}   # id -> {"id", "properties"}
        self.notes: list[dict[str, Any]] = []
        self.engagements: dict[tuple[str, str], dict[str, Any]] = {}
        self.owner_history: dict[str, list[str]] = {}   # contact id -> hubspot_owner_id values, in order
        self.upserts: Counter[str] = Counter()            # email -> upserts that succeeded
        self._ids = itertools.count(901)
        self.app = FastAPI()
        self.app.add_api_route("/crm/v3/objects/contacts/batch/upsert", self._upsert, methods=["POST"])
        self.app.add_api_route("/crm/v3/objects/notes/batch/create", self._notes, methods=["POST"])
        self.app.add_api_route("/crm/v3/objects/{kind}/{object_id}", self._read, methods=["GET"])

    def contact_by_email(self, email: str) -> dict[str, Any] | None:
        return next((c for c in self.contacts.values() if c["properties"].get("email") == email.lower()), None)

    async def _guard(self, request: Request) -> JSONResponse | None:
        failed = await self.injected(request, {"status": "error", "message": "You have reached your secondly limit.",
                                               "errorType": "RATE_LIMIT", "policyName": "SECONDLY"})
        if failed is not None:
            return failed
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"status": "error", "message": "Authentication credentials not found.",
                                 "category": "INVALID_AUTHENTICATION"}, status_code=401)
        return None

    async def _upsert(self, request: Request) -> Any:
        if (failed := await self._guard(request)) is not None:
            return failed
        body = await request.json()
        results, started = [], _now_iso()
        for item in body.get("inputs", []):
            if item.get("idProperty") != "email":
                return JSONResponse({"status": "error", "category": "VALIDATION_ERROR",
                                     "message": "idProperty must be a unique property"}, status_code=400)
            email = str(item["id"]).lower()
            self.received_at.setdefault(email, time.time())
            self.upserts[email] += 1
            existing = self.contact_by_email(email)
            contact = existing or {"id": str(next(self._ids)), "properties": {}, "createdAt": _now_iso()}
            contact["properties"].update({**item.get("properties", {}), "email": email})
            contact["updatedAt"] = _now_iso()
            self.contacts[contact["id"]] = contact
            if "hubspot_owner_id" in item.get("properties", {}):
                self.owner_history.setdefault(contact["id"], []).append(item["properties"]["hubspot_owner_id"])
            results.append({**contact, "archived": False, "new": existing is None})
        return {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _now_iso()}

    async def _notes(self, request: Request) -> Any:
        if (failed := await self._guard(request)) is not None:
            return failed
        results = []
        for item in (await request.json()).get("inputs", []):
            note = {"id": str(next(self._ids)), "properties": item["properties"],
                    "associations": item.get("associations", [])}
            self.notes.append(note)
            results.append({"id": note["id"], "properties": note["properties"], "archived": False})
        return JSONResponse({"status": "COMPLETE", "results": results}, status_code=201)

    async def _read(self, kind: str, object_id: str, request: Request) -> Any:
        if (failed := await self._guard(request)) is not None:
            return failed
        found = self.engagements.get((kind, object_id))
        if found is None:
            return JSONResponse({"status": "error", "message": "Object not found", "category": "OBJECT_NOT_FOUND"},
                                status_code=404)
        return found

    def log_engagement(self, kind: str, contact_id: str, owner_id: str | None, **properties: Any) -> dict[str, Any]:
        """A rep logged a call / email / meeting on the contact; returns the webhook event HubSpot would send."""
        object_id = str(next(self._ids))
        props = {"hs_timestamp": _now_iso(), **({"hubspot_owner_id": owner_id} if owner_id else {}), **properties}
        self.engagements[(kind, object_id)] = {
            "id": object_id, "properties": props, "createdAt": _now_iso(), "archived": False,
            "associations": {"contacts": {"results": [{"id": contact_id, "type": f"{kind[:-1]}_to_contact"}]}}}
        type_id = {"calls": "0-48", "emails": "0-49", "meetings": "0-47"}[kind]
        return {"eventId": next(self._ids) * 1000, "subscriptionId": 77, "portalId": self.portal_id, "appId": 1,
                "occurredAt": int(time.time() * 1000), "subscriptionType": "object.creation", "attemptNumber": 0,
                "objectId": int(object_id), "objectTypeId": type_id, "changeFlag": "CREATED", "changeSource": "CRM"}

    def property_change(self, contact_id: str, name: str, value: str) -> dict[str, Any]:
        return {"eventId": next(self._ids) * 1000, "subscriptionId": 78, "portalId": self.portal_id, "appId": 1,
                "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0, "objectId": int(contact_id), "propertyName": name, "propertyValue": value,
                "changeSource": "CRM_UI"}


class FakeSalesforce(_Faults):
    """OAuth 2.0 client credentials, and Lead upsert by external id; tokens can be expired on demand."""

    def __init__(self, client_id: str = "sf-client", client_secret: str = "sf-secret",
                 api_version: str = "v60.0") -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.valid_tokens: set[str] = set()
        self.leads: dict[str, dict[str, Any]] = {}      # Salesforce id -> fields (incl. LeadBridge_Id__c)
        self.owner_history: dict[str, list[str]] = {}
        self.base = "http://127.0.0.1"  # set by the test once it knows the port (instance_url)
        self._ids = itertools.count(1)
        self.app = FastAPI()
        self.app.add_api_route("/services/oauth2/token", self._token, methods=["POST"])
        self.app.add_api_route(f"/services/data/{api_version}/sobjects/Lead/{{field}}/{{value}}", self._upsert,
                               methods=["PATCH"])

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def lead_by_external_id(self, lead_id: str) -> dict[str, Any] | None:
        return next((lead for lead in self.leads.values() if lead.get("LeadBridge_Id__c") == lead_id), None)

    async def _token(self, request: Request) -> Any:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != self.client_id \
                or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"},
                                status_code=400)
        token = f"00Dfake!{next(self._ids)}"
        self.valid_tokens.add(token)
        return {"access_token": token, "instance_url": self.base, "id": f"{self.base}/id/00D/005",
                "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)), "signature": "fake"}

    async def _upsert(self, field: str, value: str, request: Request) -> Any:
        failed = await self.injected(request, [{"message": "Server busy", "errorCode": "SERVER_UNAVAILABLE"}])
        if failed is not None:
            return failed
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return JSONResponse([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                                status_code=401)
        fields = await request.json()
        if field != "LeadBridge_Id__c":
            return JSONResponse([{"message": f"Provided external ID field does not exist: {field}",
                                  "errorCode": "NOT_FOUND"}], status_code=404)
        missing = [f for f in ("LastName", "Company") if not fields.get(f)]
        if missing:
            return JSONResponse([{"message": "Required fields are missing", "errorCode": "REQUIRED_FIELD_MISSING",
                                  "fields": missing}], status_code=400)
        self.received_at.setdefault(value, time.time())
        existing = self.lead_by_external_id(value)
        sf_id = existing["Id"] if existing else f"00Q{next(self._ids):015d}"
        lead = {**(existing or {}), **fields, "Id": sf_id, "LeadBridge_Id__c": value}
        self.leads[sf_id] = lead
        if "OwnerId" in fields:
            self.owner_history.setdefault(sf_id, []).append(fields["OwnerId"])
        return JSONResponse({"id": sf_id, "success": True, "errors": [], "created": existing is None},
                            status_code=200 if existing else 201)


def outbound_message(org_id: str, notifications: list[tuple[str, str, dict[str, str]]]) -> bytes:
    """A Salesforce Outbound Message: (notification id, sObject type, fields) per notification."""
    items = "".join(
        f"<Notification><Id>{nid}</Id><sObject xsi:type=\"sf:{otype}\" "
        f"xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">"
        + "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items()) + "</sObject></Notification>"
        for nid, otype, fields in notifications)
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f'<OrganizationId>{org_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>'
            '<SessionId xsi:nil="true"/><EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0</EnterpriseUrl>'
            '<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0</PartnerUrl>'
            f'{items}</notifications></soapenv:Body></soapenv:Envelope>').encode()
