"""Roster changes through the API: validate the whole roster, store it, re-route a deactivated rep's leads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import yaml
from leadbridge_events.edge import JsonTooDeep, loads_json
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from . import assigner, db, store
from .roster import Rep, Roster


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse_roster_text(text: str) -> Roster:
    """A roster from YAML or JSON text (JSON is YAML, but give JSON's better errors first).

    Every problem is a ValueError that says what is wrong (the API answers 422): broken YAML, nesting too
    deep, NUL characters (PostgreSQL cannot store them)."""
    try:
        try:
            data: Any = loads_json(text)
        except json.JSONDecodeError:
            data = yaml.safe_load(text)
    except JsonTooDeep as exc:
        raise ValueError(str(exc)) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"the roster is neither valid JSON nor valid YAML{at}: "
                         f"{getattr(exc, 'problem', None) or type(exc).__name__}") from None
    except RecursionError:
        raise ValueError("the roster is nested too deeply") from None
    if _has_nul(data):
        raise ValueError("the roster contains NUL characters, which cannot be stored; remove them")
    if not isinstance(data, dict):
        raise ValueError("a roster file is a mapping with teams, reps, rules and fallback_pool")
    return Roster.model_validate(data)


def validated(roster: Roster) -> Roster:
    return Roster.model_validate(roster.model_dump(mode="json"))


async def save_roster(session: AsyncSession, roster: Roster, now: datetime, emit: assigner.Emit) -> list[str]:
    """Replace the whole roster; reps that disappear or become inactive have their leads re-routed.
    Returns the lead ids that were re-routed."""
    roster = validated(roster)
    before = await store.load_roster(session)
    await session.execute(delete(db.teams))
    await session.execute(delete(db.reps))
    for team in roster.teams:
        await store.upsert_team(session, team)
    for rep in roster.reps:
        await store.upsert_rep(session, rep)
    await store.save_routing(session, roster.rules, roster.fallback_pool)
    gone = [r.id for r in before.reps if r.active and not _active(roster, r.id)]
    return await reroute_leads_of(session, gone, now, emit)


def _active(roster: Roster, rep_id: str) -> bool:
    rep = roster.rep(rep_id)
    return rep is not None and rep.active


async def put_rep(session: AsyncSession, rep: Rep, now: datetime, emit: assigner.Emit) -> list[str]:
    roster = await store.load_roster(session)
    reps = [r for r in roster.reps if r.id != rep.id] + [rep]
    validated(roster.model_copy(update={"reps": reps}))
    was_active = _active(roster, rep.id)
    await store.upsert_rep(session, rep)
    return await reroute_leads_of(session, [rep.id] if was_active and not rep.active else [], now, emit)


async def remove_rep(session: AsyncSession, rep_id: str, now: datetime, emit: assigner.Emit) -> list[str]:
    roster = await store.load_roster(session)
    validated(roster.model_copy(update={"reps": [r for r in roster.reps if r.id != rep_id]}))
    await store.delete_rep(session, rep_id)
    return await reroute_leads_of(session, [rep_id], now, emit)


async def reroute_leads_of(session: AsyncSession, rep_ids: list[str], now: datetime,
                           emit: assigner.Emit) -> list[str]:
    moved: list[str] = []
    for rep_id in rep_ids:
        for lead_id in await store.open_leads_of(session, rep_id):
            row = await store.lock_lead(session, lead_id)
            if row is None or row.assignee != rep_id:
                continue
            await assigner.reroute(session, emit, row, now, why=f"re-route: {rep_id} was deactivated",
                                   release_reason="rep deactivated")
            moved.append(lead_id)
    return moved
