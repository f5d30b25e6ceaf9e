"""The inbound webhook routes: HubSpot (``/v1/inbound/hubspot/{portal}``) and Salesforce Outbound Messages
(``/v1/inbound/salesforce/{org}``). Verified, deduplicated, and turned into ``follow-up-logged`` (outbox)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged
from leadbridge_events.failures import is_transient
from leadbridge_events.idempotency import claim_event
from leadbridge_events.transaction import Transaction, Transactions
from sqlalchemy.ext.asyncio import AsyncSession

from . import inbound_hubspot as hs
from . import inbound_salesforce as sf
from . import queue
from .config import CrmConfig
from .hubspot import HubSpotClient
from .metrics import INBOUND
from .tables import processed_events

log = logging.getLogger("leadbridge.crm_sync.inbound")
SOURCE = "crm-sync"
UNAVAILABLE = {"Retry-After": "5"}


async def _emit(tx: Transaction, follow_up: FollowUpLogged, crm: str) -> None:
    event = Envelope.of(follow_up, source=SOURCE, lead_id=follow_up.lead_id, time=follow_up.logged_at)
    await tx.emit(event)
    log.info("follow-up from CRM", extra={"lead_id": follow_up.lead_id, "event_id": event.id, "crm": crm,
                                          "follow_up_id": follow_up.follow_up_id})


def inbound_router(transaction: Transactions, config: CrmConfig,
                   hubspot: Mapping[str, HubSpotClient], clock: Callable[[], datetime],
                   max_age_seconds: float) -> APIRouter:
    api = APIRouter(prefix="/v1/inbound", tags=["inbound"])

    @api.post("/hubspot/{name}")
    async def hubspot_webhook(name: str, request: Request) -> Response:
        """HubSpot webhook events (signature v3, 5-minute window), deduplicated by eventId."""
        portal, client = config.hubspot.get(name), hubspot.get(name)
        if portal is None or client is None or not portal.client_secret:
            return JSONResponse({"error": f"no HubSpot portal {name} with a client secret"}, status_code=404)
        body, now = await request.body(), clock()
        try:
            hs.verify(portal.client_secret, request.method, portal.webhook_url or str(request.url), body,
                      {k.lower(): v for k, v in request.headers.items()}, now, max_age_seconds)
        except hs.SignatureError as exc:
            INBOUND.labels("hubspot", "stale" if exc.stale else "bad_signature").inc()
            return JSONResponse({"error": str(exc)}, status_code=401)
        try:
            events = json.loads(body)
            assert isinstance(events, list) and all(isinstance(e, dict) and "eventId" in e for e in events)
        except (ValueError, AssertionError):
            return JSONResponse({"error": "expected a JSON array of HubSpot events with eventId"}, status_code=400)
        mine = [e for e in events if e.get("portalId") in (None, portal.portal_id)]
        try:  # webhooks carry ids only: fetch the engagements before the transaction
            engagements = {str(e["eventId"]): await client.engagement(str(e["objectTypeId"]), str(e["objectId"]))
                           for e in mine if hs.needs_engagement(e)}
        except httpx.HTTPError as exc:
            log.warning("HubSpot engagement fetch failed; HubSpot will retry", extra={"error": type(exc).__name__})
            return JSONResponse({"error": "HubSpot API unavailable; retry"}, status_code=503, headers=UNAVAILABLE)
        counts = {"accepted": 0, "duplicate": 0, "ignored": len(events) - len(mine)}
        try:
            async with transaction() as tx:
                session = tx.session
                for e in mine:
                    if not await claim_event(session, processed_events, f"hubspot:{name}", str(e["eventId"])):
                        counts["duplicate"] += 1
                        continue
                    follow_up = await _hubspot_follow_up(session, name, portal.portal_id, e,
                                                         engagements.get(str(e["eventId"])), now)
                    if follow_up is None:
                        counts["ignored"] += 1
                        continue
                    await _emit(tx, follow_up, "hubspot")
                    counts["accepted"] += 1
        except Exception as exc:
            if not is_transient(exc):
                raise
            return JSONResponse({"error": "database unavailable; retry"}, status_code=503, headers=UNAVAILABLE)
        for result, n in counts.items():
            INBOUND.labels("hubspot", result).inc(n)
        return JSONResponse(counts)

    @api.post("/salesforce/{name}")
    async def salesforce_outbound_message(name: str, request: Request) -> Response:
        """A Salesforce Outbound Message (SOAP); acknowledged with <Ack>true</Ack>."""
        org = config.salesforce.get(name)
        if org is None:
            return Response(sf.fault(f"no Salesforce org {name}"), status_code=404, media_type="text/xml")
        try:
            message = sf.parse(await request.body())
        except sf.BadMessage as exc:
            return Response(sf.fault(str(exc)), status_code=400, media_type="text/xml")
        if not sf.same_org(message.organization_id, org.organization_id):
            INBOUND.labels("salesforce", "wrong_org").inc()
            return Response(sf.fault("unknown OrganizationId"), status_code=403, media_type="text/xml")
        now, counts = clock(), {"accepted": 0, "duplicate": 0, "ignored": 0}
        try:
            async with transaction() as tx:
                session = tx.session
                for n in message.notifications:
                    if not await claim_event(session, processed_events, f"salesforce:{name}", n.id):
                        counts["duplicate"] += 1
                        continue
                    follow_up = await _salesforce_follow_up(session, name, org, n, now)
                    if follow_up is None:
                        counts["ignored"] += 1
                        continue
                    await _emit(tx, follow_up, "salesforce")
                    counts["accepted"] += 1
        except Exception as exc:
            if not is_transient(exc):
                raise
            return Response(sf.fault("database unavailable; retry"), status_code=503, headers=UNAVAILABLE,
                            media_type="text/xml")
        for result, n in counts.items():
            INBOUND.labels("salesforce", result).inc(n)
        return Response(sf.ACK, media_type="text/xml")

    return api


async def _hubspot_follow_up(session: AsyncSession, name: str, portal_id: int, event: dict[str, Any],
                             engagement: dict[str, Any] | None, now: datetime) -> FollowUpLogged | None:
    destination = f"hubspot:{name}"
    if engagement is not None:
        if engagement.get("missing"):
            return None
        for contact_id in hs.engagement_contact_ids(engagement):
            found = await queue.lead_for_record(session, destination, contact_id)
            if found:
                owner = (engagement.get("properties") or {}).get("hubspot_owner_id") or found[1]
                actor = await queue.rep_for_owner(session, "hubspot", owner)
                return hs.engagement_follow_up(portal_id, event, engagement, found[0], actor, now)
        return None
    if hs.is_property_change(event):
        found = await queue.lead_for_record(session, destination, str(event.get("objectId")))
        if found:
            actor = await queue.rep_for_owner(session, "hubspot", found[1])
            return hs.property_follow_up(portal_id, event, found[0], actor, now)
    return None


async def _salesforce_follow_up(session: AsyncSession, name: str, org: Any, n: sf.Notification,
                                now: datetime) -> FollowUpLogged | None:
    actor = await queue.rep_for_owner(session, "salesforce", n.fields.get("OwnerId"))
    if n.object_type == "Task":
        found = await queue.lead_for_record(session, f"salesforce:{name}", n.fields.get("WhoId", ""))
        return sf.task_follow_up(org.organization_id, n, found[0], actor, now) if found else None
    if n.object_type == "Lead":
        return sf.lead_status_follow_up(org, n, actor, now)
    return None
