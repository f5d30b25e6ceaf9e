"""The roster API: teams, reps, rules, whole-roster import/export, and a lead's routing status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from leadbridge_events.transaction import Transaction
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from . import db, roster_announcer, roster_io, store
from .roster import Rep, Roster, Rule, Team


class RoutingConfig(BaseModel):
    rules: list[Rule]
    fallback_pool: str | None = None


class Changed(BaseModel):
    ok: bool = True
    rerouted_leads: list[str] = []


def build_router(transaction: Callable[[], AbstractAsyncContextManager[Transaction]]) -> APIRouter:
    """``transaction``: the runtime's (``ServiceRuntime.transaction``); each request runs in one."""
    api = APIRouter()

    async def tx() -> AsyncIterator[Transaction]:
        async with transaction() as t:
            before = await roster_announcer.version(t.session)
            yield t
            await roster_announcer.announce_if_changed(t.session, t.emit, before, t.now())

    def bad(exc: Exception | str) -> HTTPException:
        """422 in the shape the OpenAPI document promises: ``{"detail": [{"loc", "msg", "type"}, ...]}``."""
        if isinstance(exc, ValidationError):
            detail = exc.errors(include_url=False, include_context=False, include_input=False)
        else:
            detail = [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        return HTTPException(status_code=422, detail=detail)

    @api.get("/roster", response_model=Roster)
    async def get_roster(t=Depends(tx)) -> Roster:
        return await store.load_roster(t.session)

    @api.post("/roster/import", response_model=Changed)
    async def import_roster(request: Request, t=Depends(tx)) -> Changed:
        """Replace the whole roster with a YAML or JSON document (the request body)."""
        try:
            roster = roster_io.parse_roster_text((await request.body()).decode())
            return Changed(rerouted_leads=await roster_io.save_roster(t.session, roster, t.now(), t.emit))
        except (ValueError, ValidationError) as exc:
            raise bad(exc) from exc

    @api.get("/teams", response_model=list[Team])
    async def list_teams(t=Depends(tx)) -> list[Team]:
        return (await store.load_roster(t.session)).teams

    @api.put("/teams/{team_id}", response_model=Changed)
    async def put_team(team_id: str, team: Team, t=Depends(tx)) -> Changed:
        if team.id != team_id:
            raise bad("team id in the path and the body differ")
        roster = await store.load_roster(t.session)
        try:
            teams = [x for x in roster.teams if x.id != team_id] + [team]
            roster_io.validated(roster.model_copy(update={"teams": teams}))
        except ValidationError as exc:
            raise bad(exc) from exc
        await store.upsert_team(t.session, team)
        return Changed()

    @api.delete("/teams/{team_id}", response_model=Changed)
    async def delete_team(team_id: str, t=Depends(tx)) -> Changed:
        roster = await store.load_roster(t.session)
        if roster.members(team_id):
            raise HTTPException(409, f"team {team_id!r} still has reps; move or delete them first")
        try:
            roster_io.validated(roster.model_copy(update={"teams": [x for x in roster.teams if x.id != team_id]}))
        except ValidationError as exc:
            raise bad(exc) from exc
        await store.delete_team(t.session, team_id)
        return Changed()

    @api.get("/reps", response_model=list[Rep])
    async def list_reps(t=Depends(tx)) -> list[Rep]:
        return (await store.load_roster(t.session)).reps

    @api.get("/reps/{rep_id}", response_model=Rep)
    async def get_rep(rep_id: str, t=Depends(tx)) -> Rep:
        rep = (await store.load_roster(t.session)).rep(rep_id)
        if rep is None:
            raise HTTPException(404, "no such rep")
        return rep

    @api.put("/reps/{rep_id}", response_model=Changed)
    async def put_rep(rep_id: str, rep: Rep, t=Depends(tx)) -> Changed:
        """Create or replace a rep. Deactivating one re-routes their open leads at once."""
        if rep.id != rep_id:
            raise bad("rep id in the path and the body differ")
        try:
            return Changed(rerouted_leads=await roster_io.put_rep(t.session, rep, t.now(), t.emit))
        except ValidationError as exc:
            raise bad(exc) from exc

    @api.patch("/reps/{rep_id}", response_model=Changed)
    async def patch_rep(rep_id: str, changes: dict[str, Any] = Body(...), t=Depends(tx)) -> Changed:
        """Change some fields of a rep, e.g. {"active": false} or {"out_of_office": [...]}."""
        rep = (await store.load_roster(t.session)).rep(rep_id)
        if rep is None:
            raise HTTPException(404, "no such rep")
        try:
            new = Rep.model_validate({**rep.model_dump(mode="json"), **changes, "id": rep_id})
            return Changed(rerouted_leads=await roster_io.put_rep(t.session, new, t.now(), t.emit))
        except ValidationError as exc:
            raise bad(exc) from exc

    @api.delete("/reps/{rep_id}", response_model=Changed)
    async def delete_rep(rep_id: str, t=Depends(tx)) -> Changed:
        try:
            return Changed(rerouted_leads=await roster_io.remove_rep(t.session, rep_id, t.now(), t.emit))
        except ValidationError as exc:
            raise bad(exc) from exc

    @api.get("/rules", response_model=RoutingConfig)
    async def get_rules(t=Depends(tx)) -> RoutingConfig:
        return RoutingConfig.model_validate(await store.load_routing(t.session))

    @api.put("/rules", response_model=Changed)
    async def put_rules(config: RoutingConfig, t=Depends(tx)) -> Changed:
        """Replace the ordered rule list (first match wins) and the fallback pool."""
        roster = await store.load_roster(t.session)
        try:
            roster_io.validated(roster.model_copy(update={"rules": config.rules,
                                                          "fallback_pool": config.fallback_pool}))
        except ValidationError as exc:
            raise bad(exc) from exc
        await store.save_routing(t.session, config.rules, config.fallback_pool)
        return Changed()

    @api.get("/leads/{lead_id}")
    async def lead_status(lead_id: str, t=Depends(tx)) -> dict[str, Any]:
        """Where a lead stands in routing and why (no personal data)."""
        row = (await t.session.execute(select(db.leads).where(db.leads.c.lead_id == lead_id))).first()
        if row is None:
            raise HTTPException(404, "the router has not seen this lead")
        return {k: row._mapping[k] for k in ("lead_id", "status", "attempt", "rule", "pool", "assignee",
                                             "previous_assignees", "reason", "hold_until", "closed_outcome", "closed_at",
                                             "waiting_since", "updated_at")}

    return api
