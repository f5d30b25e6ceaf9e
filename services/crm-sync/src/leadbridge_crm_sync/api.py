"""The admin API: webhook subscriptions (create, rotate secret, delete), destinations (health, resume, replay
dead letters) and the per-lead delivery log. Every route sits behind one dependency (``guard``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from . import queue, webhooks
from .handlers import SUBSCRIBABLE
from .tables import deliveries, delivery_attempts, destinations, subscriptions


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="https URL the signed webhooks are POSTed to.")
    event_types: list[str] = Field(min_length=1, description=f"Any of {', '.join(SUBSCRIBABLE)}.")
    teams: list[str] = Field(default_factory=list, description="Only leads of these teams; empty: all.")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SUBSCRIBABLE))
        if unknown:
            raise ValueError(f"unknown event type(s) {', '.join(unknown)}; subscribe to {', '.join(SUBSCRIBABLE)}")
        return sorted(set(value))


def _public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "event_types": row.event_types, "teams": row.teams,
            "description": row.description, "destination": f"webhook:{row.id}",
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None}


def admin_router(tx: Callable[[], AsyncIterator[AsyncSession]], guard: Callable[..., Any],
                 clock: Callable[[], datetime], rotation_grace: float) -> APIRouter:
    api = APIRouter(prefix="/v1", dependencies=[Depends(guard)], tags=["admin"])

    async def _subscription(session: AsyncSession, sub_id: str) -> Any:
        row = (await session.execute(select(subscriptions).where(subscriptions.c.id == sub_id))).first()
        if row is None:
            raise HTTPException(404, detail=f"no subscription {sub_id}")
        return row

    @api.post("/subscriptions", status_code=201)
    async def create_subscription(body: SubscriptionRequest, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        """Subscribe a URL to event types; the answer carries the signing secret (shown once)."""
        sub_id = "sub_" + uuid.uuid4().hex[:20]
        secret = webhooks.new_secret()
        await session.execute(subscriptions.insert().values(
            id=sub_id, url=body.url, event_types=body.event_types, teams=body.teams, description=body.description,
            secret=secret))
        row = await _subscription(session, sub_id)
        return {**_public(row), "secret": secret}

    @api.get("/subscriptions")
    async def list_subscriptions(session: AsyncSession = Depends(tx)) -> list[dict[str, Any]]:
        rows = (await session.execute(select(subscriptions).order_by(subscriptions.c.created_at))).all()
        return [_public(r) for r in rows]

    @api.get("/subscriptions/{sub_id}")
    async def get_subscription(sub_id: str, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        return _public(await _subscription(session, sub_id))

    @api.post("/subscriptions/{sub_id}/rotate-secret")
    async def rotate_secret(sub_id: str, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        """A new secret; deliveries carry signatures with the old one too until ``previous_secret_valid_until``."""
        row = await _subscription(session, sub_id)
        now = clock()
        until = now + timedelta(seconds=rotation_grace)
        secret = webhooks.new_secret()
        await session.execute(update(subscriptions).where(subscriptions.c.id == sub_id).values(
            secret=secret, previous_secret=row.secret, previous_secret_until=until, rotated_at=now))
        return {"id": sub_id, "secret": secret, "previous_secret_valid_until": until.isoformat()}

    @api.delete("/subscriptions/{sub_id}")
    async def delete_subscription(sub_id: str, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        await _subscription(session, sub_id)
        cancelled = await queue.cancel_pending(session, f"webhook:{sub_id}", clock(), "subscription deleted")
        await session.execute(delete(subscriptions).where(subscriptions.c.id == sub_id))
        return {"id": sub_id, "deleted": True, "cancelled_deliveries": cancelled}

    @api.get("/destinations")
    async def list_destinations(session: AsyncSession = Depends(tx)) -> list[dict[str, Any]]:
        """Every endpoint's health: failing since, paused, pending and dead-lettered deliveries."""
        d, x = deliveries, destinations
        counts = {r.destination: r for r in (await session.execute(select(
            d.c.destination, func.count().filter(d.c.status == "pending").label("pending"),
            func.count().filter(d.c.status == "dead").label("dead"),
            func.count().filter(d.c.status == "delivered").label("delivered")).group_by(d.c.destination))).all()}
        out = []
        for r in (await session.execute(select(x).order_by(x.c.id))).all():
            c = counts.get(r.id)
            out.append({"id": r.id, "kind": r.kind, "paused": r.paused_at is not None,
                        **{k: (getattr(r, k).isoformat() if getattr(r, k) else None)
                           for k in ("failing_since", "blocked_until", "paused_at", "last_success_at")},
                        "last_error": r.last_error, "pending": c.pending if c else 0, "dead": c.dead if c else 0,
                        "delivered": c.delivered if c else 0})
        return out

    @api.post("/destinations/{destination}/resume")
    async def resume_destination(destination: str, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        """Unpause an endpoint: its held deliveries go out again, in order."""
        if not await queue.resume(session, destination):
            raise HTTPException(404, detail=f"no destination {destination}")
        return {"id": destination, "paused": False}

    @api.post("/destinations/{destination}/replay")
    async def replay_dead_letters(destination: str, lead_id: str | None = None,
                                  session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        """Re-queue the endpoint's dead letters (optionally one lead's), each with a fresh retry schedule."""
        replayed = await queue.replay_dead(session, destination, clock(), lead_id)
        return {"id": destination, "replayed": replayed}

    @api.get("/leads/{lead_id}/deliveries")
    async def lead_deliveries(lead_id: str, session: AsyncSession = Depends(tx)) -> dict[str, Any]:
        """The lead's delivery log: every delivery, its status and every attempt (status codes, errors)."""
        rows = (await session.execute(select(deliveries).where(deliveries.c.lead_id == lead_id)
                                      .order_by(deliveries.c.id))).all()
        attempts = (await session.execute(select(delivery_attempts).where(delivery_attempts.c.lead_id == lead_id)
                                          .order_by(delivery_attempts.c.id))).all()
        by_delivery: dict[str, list[dict[str, Any]]] = {}
        for a in attempts:
            by_delivery.setdefault(a.delivery_id, []).append({
                "attempt": a.attempt, "result": a.result, "status_code": a.status_code, "error": a.error,
                "at": a.attempted_at.isoformat()})
        return {"lead_id": lead_id, "deliveries": [{
            "delivery_id": r.delivery_id, "destination": r.destination, "event_type": r.event_type,
            "event_id": r.event_id, "status": r.status, "attempts": r.attempts, "crm_record_id": r.crm_record_id,
            "next_attempt_at": r.next_attempt_at.isoformat() if r.status == "pending" else None,
            "log": by_delivery.get(r.delivery_id, [])} for r in rows]}

    return api
