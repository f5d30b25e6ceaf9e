"""Scoring's own tables (PostgreSQL schema ``scoring``) and the queries on them. An adapter: no rules here.

- ``leads``: the merged profile, the current stage, whether MQL was emitted, the stage reason, the recycle
  time, and the signature of the last lead-scored event (to emit only on change);
- ``activities``: everything the lead did (the capture itself and later activity), the input of scoring.

Text that comes from a lead or from sales (channel, campaign, the stage reason, activity fields) is TEXT:
the limits are the event contracts' (``leadbridge_contracts.events``), enforced where the data enters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import LeadProfile, Stage
from leadbridge_events.db import add_backbone_tables, driver_connection
from leadbridge_events.migrations import Migrations
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .lifecycle import LeadState
from .scoring import Activity

SCHEMA = "scoring"

metadata = MetaData(schema=SCHEMA)
add_backbone_tables(metadata)

leads = Table(
    "leads", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("profile", JSONB, nullable=False),
    Column("channel", Text),
    Column("campaign", Text),
    Column("captured_at", DateTime(timezone=True), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("mql_emitted", Boolean, nullable=False, default=False),
    Column("reason", Text),
    Column("recycled_at", DateTime(timezone=True)),
    Column("score", Float),
    Column("grade", String(20)),
    Column("model_version", String(200)),
    Column("last_signature", JSONB),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
)

activities = Table(
    "activities", metadata,
    Column("lead_id", String(200), ForeignKey(f"{SCHEMA}.leads.lead_id"), primary_key=True),
    Column("activity_id", String(200), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("form_type", Text),
    Column("channel", Text),
    Column("campaign", Text),
    Column("asset", Text),
)


@dataclass(frozen=True)
class StoredLead:
    lead_id: str
    profile: LeadProfile
    state: LeadState
    activities: list[Activity]
    channel: str | None = None
    campaign: str | None = None
    last_signature: list[Any] | None = None


def _state(row: Any) -> LeadState:
    return LeadState(stage=Stage(row.stage), mql_emitted=row.mql_emitted, reason=row.reason,
                     recycled_at=row.recycled_at)


def _activity(row: Any) -> Activity:
    return Activity(activity_id=row.activity_id, occurred_at=row.occurred_at, kind=row.kind,
                    form_type=row.form_type, channel=row.channel, campaign=row.campaign, asset=row.asset)


async def load_lead(session: AsyncSession, lead_id: str, *, lock: bool = True) -> StoredLead | None:
    query = select(leads).where(leads.c.lead_id == lead_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        return None
    acts = (await session.execute(
        select(activities).where(activities.c.lead_id == lead_id).order_by(activities.c.occurred_at)
    )).all()
    return StoredLead(lead_id, LeadProfile.model_validate(row.profile), _state(row), [_activity(a) for a in acts],
                      row.channel, row.campaign, row.last_signature)


async def insert_lead(session: AsyncSession, lead_id: str, profile: LeadProfile, captured_at: datetime) -> None:
    await session.execute(insert(leads).values(
        lead_id=lead_id, profile=profile.model_dump(mode="json"), channel=profile.channel,
        campaign=profile.campaign, captured_at=captured_at, stage=Stage.NURTURE.value, mql_emitted=False,
    ).on_conflict_do_nothing(index_elements=[leads.c.lead_id]))


async def insert_scored_lead(session: AsyncSession, lead_id: str, profile: LeadProfile, captured_at: datetime,
                             activity: Activity, state: LeadState, *, score: float, grade: str, model_version: str,
                             signature: list[Any]) -> bool:
    """Store a lead scoring has not seen yet, already scored, with its first activity: one round trip.

    False (and nothing written) when the lead exists already; the caller then takes the locking path.
    A concurrent insert of the same lead waits on the primary key until the other transaction ends.
    """
    new_lead = insert(leads).values(
        lead_id=lead_id, profile=profile.model_dump(mode="json"), channel=profile.channel,
        campaign=profile.campaign, captured_at=captured_at, stage=state.stage.value, mql_emitted=state.mql_emitted,
        reason=state.reason, recycled_at=state.recycled_at, score=score, grade=grade, model_version=model_version,
        last_signature=signature,
    ).on_conflict_do_nothing(index_elements=[leads.c.lead_id]).returning(leads.c.lead_id).cte("new_lead")
    values = {"activity_id": activity.activity_id, "occurred_at": activity.occurred_at, "kind": activity.kind,
              "form_type": activity.form_type, "channel": activity.channel, "campaign": activity.campaign,
              "asset": activity.asset}
    first = select(new_lead.c.lead_id, *(literal(v, activities.c[k].type).label(k) for k, v in values.items()))
    stmt = insert(activities).from_select(["lead_id", *values], first).returning(activities.c.lead_id)
    return (await session.execute(stmt)).first() is not None


_LEAD_COLUMNS = (("lead_id", "text"), ("profile", "jsonb"), ("channel", "text"), ("campaign", "text"),
                 ("captured_at", "timestamptz"), ("stage", "text"), ("mql_emitted", "boolean"), ("reason", "text"),
                 ("recycled_at", "timestamptz"), ("score", "float8"), ("grade", "text"), ("model_version", "text"),
                 ("last_signature", "jsonb"))
_ACTIVITY_COLUMNS = (("lead_id", "text"), ("activity_id", "text"), ("occurred_at", "timestamptz"), ("kind", "text"),
                     ("form_type", "text"), ("channel", "text"), ("campaign", "text"), ("asset", "text"))


def _unnest(prefix: str, columns: tuple[tuple[str, str], ...], first: int) -> str:
    """``unnest($first, ...)``: parameter ``$first + i`` is the array of ``columns[i]`` (JSON as text)."""
    arrays = ", ".join(f"${first + i}::{'text' if kind == 'jsonb' else kind}[]" for i, (_, kind) in enumerate(columns))
    return f"unnest({arrays}) WITH ORDINALITY AS {prefix}({', '.join(n for n, _ in columns)}, ord)"


def _select(prefix: str, columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"CAST({prefix}.{n} AS jsonb)" if k == "jsonb" else f"{prefix}.{n}" for n, k in columns)


# One constant statement (prepared once per connection, whatever the batch's size; run on the driver itself,
# without SQLAlchemy's per-execution work): the new leads, then the first activity of each lead actually
# inserted (the activities' foreign key is checked at the statement's end).
_INSERT_SCORED_LEADS = f"""
WITH new AS (
    INSERT INTO {leads.fullname} ({", ".join(n for n, _ in _LEAD_COLUMNS)})
    SELECT {_select("l", _LEAD_COLUMNS)} FROM {_unnest("l", _LEAD_COLUMNS, 1)} ORDER BY l.ord
    ON CONFLICT (lead_id) DO NOTHING
    RETURNING lead_id
), first_activities AS (
    INSERT INTO {activities.fullname} ({", ".join(n for n, _ in _ACTIVITY_COLUMNS)})
    SELECT {_select("a", _ACTIVITY_COLUMNS)} FROM {_unnest("a", _ACTIVITY_COLUMNS, len(_LEAD_COLUMNS) + 1)}
    JOIN new ON new.lead_id = a.lead_id ORDER BY a.ord
    ON CONFLICT DO NOTHING
)
SELECT lead_id FROM new
"""


@dataclass(frozen=True)
class NewLead:
    """A lead scoring has not seen, scored: its row of ``leads`` (``profile`` and ``last_signature`` as JSON
    text) and its first activity."""

    lead_id: str
    profile_json: str
    channel: str | None
    campaign: str | None
    captured_at: datetime
    state: LeadState
    score: float
    grade: str
    model_version: str
    signature_json: str
    activity: Activity


async def insert_scored_leads(session: AsyncSession, new: list[NewLead]) -> set[str]:
    """Many ``insert_scored_lead``s in one statement (whatever their number): the ids of the leads stored;
    a lead that exists already is left alone (its caller takes the locking path), as is its activity."""
    if not new:
        return set()
    arrays: list[list[Any]] = [
        [n.lead_id for n in new], [n.profile_json for n in new], [n.channel for n in new],
        [n.campaign for n in new], [n.captured_at for n in new], [n.state.stage.value for n in new],
        [n.state.mql_emitted for n in new], [n.state.reason for n in new], [n.state.recycled_at for n in new],
        [n.score for n in new], [n.grade for n in new], [n.model_version for n in new],
        [n.signature_json for n in new], [n.lead_id for n in new],
    ]
    arrays += [[getattr(n.activity, name) for n in new] for name, _ in _ACTIVITY_COLUMNS[1:]]
    return {r[0] for r in await (await driver_connection(session)).fetch(_INSERT_SCORED_LEADS, *arrays)}


async def update_profile(session: AsyncSession, lead_id: str, profile: LeadProfile) -> None:
    await session.execute(profile_update(lead_id, profile))


def profile_update(lead_id: str, profile: LeadProfile) -> Any:
    return leads.update().where(leads.c.lead_id == lead_id).values(profile=profile.model_dump(mode="json"))


async def add_activity(session: AsyncSession, lead_id: str, activity: Activity) -> bool:
    """Store an activity; False when it was stored already (a replay under another event id)."""
    result = await session.execute(activity_insert(lead_id, activity))
    return bool(result.rowcount)


def activity_insert(lead_id: str, activity: Activity) -> Any:
    """Store an activity unless it was stored already (a replay under another event id)."""
    return insert(activities).values(
        lead_id=lead_id, activity_id=activity.activity_id, occurred_at=activity.occurred_at, kind=activity.kind,
        form_type=activity.form_type, channel=activity.channel, campaign=activity.campaign, asset=activity.asset,
    ).on_conflict_do_nothing()


async def save_state(session: AsyncSession, lead_id: str, state: LeadState, *, score: float, grade: str,
                     model_version: str, signature: list[Any]) -> None:
    await session.execute(state_update(lead_id, state, score=score, grade=grade, model_version=model_version,
                                       signature=signature))


def state_update(lead_id: str, state: LeadState, *, score: float, grade: str, model_version: str,
                 signature: list[Any], profile: LeadProfile | None = None) -> Any:
    """The lead's new stage and score (and merged profile, when it changed)."""
    values: dict[str, Any] = dict(
        stage=state.stage.value, mql_emitted=state.mql_emitted, reason=state.reason,
        recycled_at=state.recycled_at, score=score, grade=grade, model_version=model_version,
        last_signature=signature,
    )
    if profile is not None:
        values["profile"] = profile.model_dump(mode="json")
    return leads.update().where(leads.c.lead_id == lead_id).values(**values)


async def execute_together(session: AsyncSession, statements: list[Any]) -> None:
    """Run independent writes (different rows, none reading another's result) in ONE round trip: all but the
    last become data-modifying CTEs of the last. Same transaction, same effects, same errors."""
    if not statements:
        return
    *first, main = statements
    for i, stmt in enumerate(first):
        main = main.add_cte(stmt.cte(f"write_{i}"))
    await session.execute(main)


async def all_leads(conn: AsyncConnection) -> list[StoredLead]:
    """Every stored lead with its activities (for what-if); read-only."""
    acts: dict[str, list[Activity]] = {}
    for a in (await conn.execute(select(activities).order_by(activities.c.occurred_at))).all():
        acts.setdefault(a.lead_id, []).append(_activity(a))
    rows = (await conn.execute(select(leads).order_by(leads.c.captured_at))).all()
    return [StoredLead(r.lead_id, LeadProfile.model_validate(r.profile), _state(r), acts.get(r.lead_id, []),
                       r.channel, r.campaign, r.last_signature) for r in rows]

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_scoring")
