"""LeadBridge's published event contracts, version 1.

Events are facts, named in the past tense. Each data model here is the ``data`` of one CloudEvent (see
``envelope.py`` for the metadata). Rules for changing them:

- within a version, changes are additive only (new optional fields); never rename, retype or remove;
- consumers ignore fields they do not know (``extra="ignore"``);
- a breaking change is a new model with ``schema_version = 2`` registered beside the old one.

The JSON Schemas in ``libs/contracts/schemas/`` and the AsyncAPI document are generated from these models
(``make schemas``); a test fails when the checked-in files are stale.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class EventData(BaseModel):
    """Base of every event's data: immutable, and tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


# -- field limits ---------------------------------------------------------------------------------
# The one set of limits: producers validate against them (intake answers 422 beyond them), the contracts
# below carry them (and so the JSON Schemas), and every store keeps such a field as TEXT/JSONB or at least
# this long. A consumer receiving more gets a schema-invalid event: the producer's bug, dead-lettered.

EMAIL_MAX = 320  # RFC 5321 path limit
PHONE_MAX = 40  # as typed; normalized E.164 is at most 16
TEXT_MAX = 200  # company, job title, industry, campaign, first/last name
NAME_MAX = 2 * TEXT_MAX + 1  # a name, or first and last name joined
TOKEN_MAX = 50  # normalized tokens: channel, form type
SOURCE_MAX = 100  # web_form, api, meta, an API key's source, ...
FIELD_KEY_MAX = 100  # utm / custom keys
FIELD_VALUE_MAX = 2000  # utm / custom values (an asset URL, a free answer)
FIELDS_MAX = 50  # utm / custom entries
REASON_MAX = 1000  # why sales rejected or lost a lead
NOTE_MAX = 4000
ACTOR_MAX = 200
COMPANY_SIZE_MAX = 10_000_000  # employees; more than any company has
AMOUNT_MAX = 1e12

_Text = Annotated[str, Field(max_length=TEXT_MAX)]
_FieldKey = Annotated[str, Field(max_length=FIELD_KEY_MAX)]
_FieldValue = Annotated[str, Field(max_length=FIELD_VALUE_MAX)]


# -- shared value objects -------------------------------------------------------------------------


class Contact(BaseModel):
    """Personal data of a lead. Travels in events (CRMs need it); never in logs or metric labels."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    email: str | None = Field(default=None, max_length=EMAIL_MAX, description="Normalized (lower-cased) email address.")
    phone: str | None = Field(default=None, max_length=PHONE_MAX,
                              description="Normalized phone number, E.164 where possible.")
    name: str | None = Field(default=None, max_length=NAME_MAX)


class LeadProfile(BaseModel):
    """What is known about a lead: who they are, where they came from, what they asked for."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    contact: Contact = Field(default_factory=Contact)
    company: _Text | None = None
    job_title: _Text | None = None
    company_size: int | None = Field(default=None, ge=0, le=COMPANY_SIZE_MAX, description="Number of employees.")
    industry: _Text | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, upper case.")
    language: str | None = Field(default=None, description="ISO 639-1, lower case.")
    channel: str | None = Field(default=None, max_length=TOKEN_MAX,
                                description="paid, organic, social, seo, mail, referral, event, ...")
    campaign: _Text | None = None
    form_type: str | None = Field(default=None, max_length=TOKEN_MAX,
                                  description="demo_request, pricing, contact, survey, ...")
    source: str | None = Field(default=None, max_length=SOURCE_MAX,
                               description="web_form, api, meta, google, linkedin, ...")
    consent: bool | None = None
    utm: dict[_FieldKey, _FieldValue] = Field(default_factory=dict, max_length=FIELDS_MAX)
    custom: dict[_FieldKey, _FieldValue] = Field(default_factory=dict, max_length=FIELDS_MAX)
    is_test: bool = Field(default=False, description="A platform test lead: kept out of the funnel.")


class Stage(StrEnum):
    NURTURE = "nurture"
    MQL = "mql"
    SQL = "sql"


class TouchType(StrEnum):
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    SOCIAL = "social"
    NOTE = "note"


class FollowUpOutcome(StrEnum):
    NO_ANSWER = "no-answer"
    CONNECTED = "connected"
    MEETING_BOOKED = "meeting-booked"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    QUALIFIED = "qualified"
    WON = "won"
    LOST = "lost"


FINAL_OUTCOMES = frozenset({FollowUpOutcome.WON, FollowUpOutcome.LOST})


class Bant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    budget: bool = False
    authority: bool = False
    need: bool = False
    timing: bool = False


class MatchedRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: str = Field(description="Rule id from the scoring model.")
    category: str = Field(description="fit, engagement, intent or negative.")
    points: float
    explanation: str = Field(default="", description="One line a sales rep can read.")


class SlaKind(StrEnum):
    FIRST_TOUCH = "first_touch"
    CADENCE = "cadence"
    DISPOSITION = "disposition"


# -- the events -----------------------------------------------------------------------------------


class LeadCaptured(EventData):
    """Intake accepted a new lead and stored it durably."""

    event_type: ClassVar[str] = "lead-captured"

    lead_id: str
    captured_at: datetime
    profile: LeadProfile
    dedupe_key: str | None = Field(default=None, description="Idempotency-Key or platform lead id.")


class LeadActivityRecorded(EventData):
    """The same person showed up again (another form, download, visit): activity on an existing lead."""

    event_type: ClassVar[str] = "lead-activity-recorded"

    lead_id: str
    activity_id: str
    occurred_at: datetime
    kind: str = Field(max_length=TOKEN_MAX, description="form_submission, download, webinar, visit, ...")
    form_type: str | None = Field(default=None, max_length=TOKEN_MAX)
    channel: str | None = Field(default=None, max_length=TOKEN_MAX)
    campaign: _Text | None = None
    asset: str | None = Field(default=None, max_length=FIELD_VALUE_MAX)
    profile: LeadProfile | None = Field(default=None, description="Profile fields from this submission.")


class LeadScored(EventData):
    """Scoring computed a (new) score for a lead; the stage says whether it is sales-ready."""

    event_type: ClassVar[str] = "lead-scored"

    lead_id: str
    scored_at: datetime
    score: float
    fit: float = 0
    engagement: float = 0
    intent: float = 0
    negative: float = 0
    grade: str = Field(description="Letter grade, e.g. A-D.")
    stage: Stage
    previous_stage: Stage | None = None
    became_mql: bool = Field(default=False, description="True exactly once per lead (per recycle) when it crosses the MQL threshold.")
    reason: str | None = Field(default=None, description="Why the stage is what it is (e.g. sales rejected: no budget).")
    matched_rules: list[MatchedRule] = Field(default_factory=list)
    model_version: str
    profile: LeadProfile = Field(default_factory=LeadProfile, description="Snapshot, so routers and CRMs need no lookup.")


class LeadRouted(EventData):
    """The router assigned the lead to a rep (or, with no rep able to take it, applied an overflow policy)."""

    event_type: ClassVar[str] = "lead-routed"

    lead_id: str
    routed_at: datetime
    outcome: str = Field(default="assigned", description="assigned | fallback_owner | returned_to_nurture")
    assignee_id: str | None = None
    assignee_name: str | None = None
    team: str | None = None
    pool: str | None = None
    rule: str | None = Field(default=None, description="The routing rule that matched (or 'fallback').")
    reason: str = Field(description="Human-readable explanation of the decision.")
    reason_code: str | None = Field(
        default=None, description="Machine-readable reason: assigned | capacity (overflowed) | no_pool."
    )
    sla_policy: str | None = Field(default=None, description="Name of the SLA policy the watcher applies.")
    attempt: int = Field(default=1, description="1 for the first routing; +1 for every re-route.")
    previous_assignees: list[str] = Field(default_factory=list)
    overflowed_from: list[str] = Field(
        default_factory=list, description="Pools nobody could take it in, in the order it overflowed through them."
    )
    assignee_timezone: str | None = Field(default=None, description="IANA zone of the assignee, for business hours.")
    assignee_crm_owner_ids: dict[str, str] = Field(
        default_factory=dict,
        description="The assignee's user id in each CRM, e.g. {'hubspot': '1234567', 'salesforce': '005...'}.",
    )
    score: float | None = None
    grade: str | None = None
    profile: LeadProfile = Field(default_factory=LeadProfile)


class FollowUpLogged(EventData):
    """Sales touched the lead (call, email, meeting, ...) or recorded an outcome, reported by a CRM."""

    event_type: ClassVar[str] = "follow-up-logged"

    lead_id: str
    follow_up_id: str
    touch_type: TouchType
    actor: str | None = Field(default=None, max_length=ACTOR_MAX, description="Rep id who did it.")
    occurred_at: datetime
    logged_at: datetime
    outcome: FollowUpOutcome | None = None
    reason: str | None = Field(default=None, max_length=REASON_MAX, description="Why rejected or lost.")
    bant: Bant | None = None
    amount: float | None = Field(default=None, ge=0, le=AMOUNT_MAX, description="Won amount.")
    note: str | None = Field(default=None, max_length=NOTE_MAX)


class SlaAtRisk(EventData):
    """A follow-up deadline is close (e.g. 75% of its time used) and has not been met."""

    event_type: ClassVar[str] = "sla-at-risk"

    lead_id: str
    deadline_id: str
    policy: str
    kind: SlaKind
    assignee_id: str | None = None
    team: str | None = None
    due_at: datetime
    fired_at: datetime
    routing_attempt: int = 1


class SlaBreached(EventData):
    """A follow-up deadline passed without the touch it required."""

    event_type: ClassVar[str] = "sla-breached"

    lead_id: str
    deadline_id: str
    policy: str
    kind: SlaKind
    assignee_id: str | None = None
    team: str | None = None
    due_at: datetime
    fired_at: datetime
    routing_attempt: int = 1
    escalate: bool = Field(default=True, description="Whether the policy asks the router to re-assign.")


class SlaDeadline(BaseModel):
    """One follow-up deadline the SLA watcher started."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    deadline_id: str
    kind: SlaKind
    due_at: datetime
    at_risk_at: datetime | None = Field(default=None, description="When an at-risk warning fires, if it does.")


class SlaDeadlinesSet(EventData):
    """A routing started the clock: the deadlines the assignee now owes, and those it superseded (re-route)."""

    event_type: ClassVar[str] = "sla-deadlines-set"

    lead_id: str
    routing_attempt: int = 1
    assignee_id: str | None = None
    team: str | None = None
    policy: str
    set_at: datetime | None = Field(default=None, description="When the routing started the clock.")
    deadlines: list[SlaDeadline] = Field(default_factory=list)
    superseded_deadline_ids: list[str] = Field(
        default_factory=list, description="Live deadlines of the previous attempt that no longer count."
    )


class SlaDeadlineMet(EventData):
    """A touch met a first-touch deadline (``late``: it happened after the deadline was due)."""

    event_type: ClassVar[str] = "sla-deadline-met"

    lead_id: str
    deadline_id: str
    kind: SlaKind
    met_at: datetime = Field(description="When the touch that met it occurred.")
    late: bool = False
    due_at: datetime | None = None
    routing_attempt: int = 1


class CrmDeliveryRecorded(EventData):
    """crm-sync tried to deliver one of the lead's events to a destination (a CRM or a webhook): the outcome."""

    event_type: ClassVar[str] = "crm-delivery-recorded"

    lead_id: str
    delivery_id: str
    destination: str = Field(description="e.g. 'hubspot:main', 'salesforce:acme', 'webhook:<subscription id>'.")
    destination_kind: str = Field(description="hubspot | salesforce | webhook")
    delivered_event_id: str = Field(description="Id of the LeadBridge event that was delivered.")
    delivered_event_type: str
    attempt: int = Field(description="1 for the first attempt.")
    result: str = Field(description="delivered | failed (will retry) | dead (gave up; replayable) | skipped")
    status_code: int | None = Field(default=None, description="HTTP status of the attempt, if one came back.")
    error: str | None = Field(default=None, description="Why the attempt failed (no personal data).")
    next_attempt_at: datetime | None = Field(default=None, description="When it is retried (result failed).")
    crm_record_id: str | None = Field(default=None, description="The CRM's id of the contact or lead.")
    recorded_at: datetime


class RosterRep(BaseModel):
    """One rep as the router routes to them: caps and availability (no personal data beyond a display name)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str | None = None
    team: str
    active: bool = True
    weight: float = 1.0
    daily_cap: int | None = None
    weekly_cap: int | None = Field(default=None, description="New leads per local week (Monday start).")
    max_open: int | None = Field(default=None, description="Routed leads open at once.")
    timezone: str = "UTC"
    working_hours: dict[str, list[str]] | None = Field(
        default=None, description="Per weekday (mon..sun) 'HH:MM-HH:MM' spans in the rep's zone; null = always."
    )
    out_of_office: list[dict[str, str | None]] = Field(
        default_factory=list, description="Absences: start, end (YYYY-MM-DD whole local days, or ISO datetimes), reason."
    )


class RosterTeam(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str | None = None
    overflow: str = Field(default="nurture", description="next_pool | fallback_owner | nurture")
    overflow_to: str | None = Field(default=None, description="The next pool or the fallback owner.")


class RosterChanged(EventData):
    """The router's roster changed (teams, reps, caps, shifts, absences): the whole roster after the change.

    Not about a lead: the record key (the envelope's ``lead_id``) is the constant ``roster``.
    """

    event_type: ClassVar[str] = "roster-changed"

    changed_at: datetime
    teams: list[RosterTeam] = Field(default_factory=list)
    reps: list[RosterRep] = Field(default_factory=list)


EVENT_MODELS: dict[tuple[str, int], type[EventData]] = {
    (m.event_type, m.schema_version): m
    for m in (LeadCaptured, LeadActivityRecorded, LeadScored, LeadRouted, FollowUpLogged, SlaAtRisk, SlaBreached,
              SlaDeadlinesSet, SlaDeadlineMet, CrmDeliveryRecorded, RosterChanged)
}


def event_model(event_type: str, version: int = 1) -> type[EventData] | None:
    return EVENT_MODELS.get((event_type, version))
