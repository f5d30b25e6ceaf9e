"""Salesforce Outbound Messages in: Task creation and Lead status changes become ``follow-up-logged``.

An Outbound Message is a SOAP ``notifications`` envelope (namespace ``http://soap.sforce.com/2005/09/outbound``)
with the ``OrganizationId`` and one or more ``Notification`` (its ``Id``, and the ``sObject`` with the fields the
workflow chose). It must be acknowledged with ``<Ack>true</Ack>``, otherwise Salesforce retries it for up to
24 hours; a notification is deduplicated by its ``Id``. A message from another organisation is refused.

- ``sf:Task``: ``TaskSubtype`` (Call / Email, else a note) and ``CallDisposition`` give the touch and its
  outcome, ``WhoId`` the Lead (mapped back to the LeadBridge lead through the upserts this service made),
  ``OwnerId`` the rep;
- ``sf:Lead``: ``LeadBridge_Id__c`` names the lead; ``Status`` values listed in the org's ``status_outcomes``
  report an outcome (others are acknowledged and ignored).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from defusedxml import ElementTree
from leadbridge_contracts.events import FollowUpLogged, FollowUpOutcome, TouchType

from .config import SalesforceOrg

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_NS = uuid.UUID("a1d3c5e7-2b4f-4a6c-8e0d-9f1b3d5c7e92")
ACK = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
       f'envelope/"><soapenv:Body><notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack>'
       '</notificationsResponse></soapenv:Body></soapenv:Envelope>')
TASK_TOUCH = {"call": TouchType.CALL, "email": TouchType.EMAIL, "listemail": TouchType.EMAIL}


def fault(message: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
            'envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode>'
            f'<faultstring>{message}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>')


class BadMessage(ValueError):
    """Not an Outbound Message we can read."""


@dataclass(frozen=True)
class Notification:
    id: str
    object_type: str            # Task | Lead | ...
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    notifications: list[Notification]


def parse(body: bytes) -> OutboundMessage:
    try:
        root = ElementTree.fromstring(body)
    except Exception as exc:  # noqa: BLE001 - ParseError, or defusedxml refusing entities
        raise BadMessage(f"not XML: {type(exc).__name__}") from exc
    notifications = root.find(f".//{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise BadMessage("no notifications element (http://soap.sforce.com/2005/09/outbound)")
    org = (notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip()
    out = []
    for n in notifications.findall(f"{{{OUTBOUND_NS}}}Notification"):
        nid = (n.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip()
        obj = n.find(f"{{{OUTBOUND_NS}}}sObject")
        if not nid or obj is None:
            raise BadMessage("a Notification without Id or sObject")
        object_type = (obj.get(XSI_TYPE) or "").split(":")[-1]
        fields = {child.tag.split("}")[-1]: (child.text or "").strip() for child in obj}
        out.append(Notification(nid, object_type, fields))
    return OutboundMessage(org, out)


def same_org(a: str, b: str) -> bool:
    """Salesforce ids come in 15- and 18-character forms; the first 15 characters are the id."""
    return a[:15] == b[:15] and bool(a)


def _time(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _call_outcome(disposition: str) -> FollowUpOutcome | None:
    text = disposition.lower()
    if "no answer" in text or "voicemail" in text or "busy" in text:
        return FollowUpOutcome.NO_ANSWER
    if "connect" in text or "reached" in text:
        return FollowUpOutcome.CONNECTED
    return None


def task_follow_up(org_id: str, n: Notification, lead_id: str, actor: str | None, now: datetime) -> FollowUpLogged:
    f = n.fields
    touch = TASK_TOUCH.get(f.get("TaskSubtype", "").lower(), TouchType.NOTE)
    outcome = _call_outcome(f.get("CallDisposition", "")) if touch == TouchType.CALL else None
    return FollowUpLogged(
        lead_id=lead_id, follow_up_id=str(uuid.uuid5(_NS, f"salesforce:{org_id[:15]}:task:{f.get('Id') or n.id}")),
        touch_type=touch, actor=actor, occurred_at=_time(f.get("CreatedDate"), now), logged_at=now, outcome=outcome,
        note=f"Salesforce task ({f.get('TaskSubtype') or 'Task'})")


def lead_status_follow_up(org: SalesforceOrg, n: Notification, actor: str | None,
                          now: datetime) -> FollowUpLogged | None:
    f = n.fields
    lead_id = f.get(org.external_id_field)
    outcome = org.status_outcomes.get(f.get("Status", ""))
    if not lead_id or outcome is None:
        return None
    reason = f"Salesforce lead status {f['Status']}" if outcome in (FollowUpOutcome.REJECTED,
                                                                      FollowUpOutcome.LOST) else None
    return FollowUpLogged(
        lead_id=lead_id,
        follow_up_id=str(uuid.uuid5(_NS, f"salesforce:{org.organization_id[:15]}:notification:{n.id}")),
        touch_type=TouchType.NOTE, actor=actor, occurred_at=_time(f.get("LastModifiedDate"), now), logged_at=now,
        outcome=outcome, reason=reason, note=f"Salesforce lead status {f.get('Status')}")
