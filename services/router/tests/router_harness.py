"""Test harness: a router app over the real stack, and helpers to feed it events."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from leadbridge_contracts import (
    Envelope,
    FollowUpLogged,
    LeadProfile,
    LeadScored,
    SlaBreached,
    SlaKind,
    Stage,
    TouchType,
)
from leadbridge_contracts.events import FollowUpOutcome
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import auth_headers, collect_events
from leadbridge_router.app import create_app
from leadbridge_router.settings import RouterSettings

NOW = lambda: datetime.now(UTC)  # noqa: E731


def always_on_roster(caps: dict[str, int | None], tag: str, *, overflow: dict | None = None,
                     cap: str = "daily_cap") -> dict[str, Any]:
    """Reps with caps in pool 'inbound', for this test's leads only (segment = ``tag``). The topics are
    shared with other tests running at the same time: their leads go to an uncapped 'others' pool, so
    they never use up this test's caps. ``cap``: which cap the numbers set (daily_cap, weekly_cap, max_open)."""
    return {
        "teams": [{"id": "inbound", "overflow": overflow or {"kind": "nurture"}, "sla_policy": "standard"},
                  {"id": "others", "overflow": {"kind": "nurture"}}],
        "reps": [{"id": rep, "team": "inbound", cap: n, "timezone": "Europe/Berlin",
                  "crm_owner_ids": {"hubspot": f"hs-{rep}", "salesforce": f"005-{rep}"}}
                 for rep, n in caps.items()] + [{"id": "someone-else", "team": "others"}],
        "rules": [{"id": "this-test", "pool": "inbound", "when": {"segments": [tag]}}],
        "fallback_pool": "others",
    }


@contextlib.asynccontextmanager
async def running_router(database_url: str, kafka: str, group: str, *, settings: RouterSettings | None = None,
                         **runner_options: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The router app over the real stack, its consumer assigned; ``settings`` replaces the harness's own."""
    settings = settings or RouterSettings(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=kafka,
                                          ROUTER_HOLD_POLL_SECONDS=3600)
    app = create_app(settings, group_id=group, auto_offset_reset="latest", **runner_options)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await runtime.kafka_ready.wait()
        await runtime.runner.wait_assigned()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router", headers=auth_headers()) as client:
            yield runtime, client


def lead_ids(n: int) -> list[str]:
    return [f"lead-{uuid.uuid4().hex[:12]}" for _ in range(n)]


def scored(lead_id: str, tag: str, *, stage: Stage = Stage.MQL, became_mql: bool = True,
           score: float = 70) -> Envelope[Any]:
    data = LeadScored(lead_id=lead_id, scored_at=NOW(), score=score, grade="B", stage=stage, became_mql=became_mql,
                      model_version="test", profile=LeadProfile(custom={"segment": tag}))
    return Envelope.of(data, source="scoring", lead_id=lead_id)


def breached(lead_id: str, assignee: str, attempt: int) -> Envelope[Any]:
    data = SlaBreached(lead_id=lead_id, deadline_id=f"d-{uuid.uuid4().hex[:8]}", policy="standard",
                       kind=SlaKind.FIRST_TOUCH, assignee_id=assignee, due_at=NOW(), fired_at=NOW(),
                       routing_attempt=attempt)
    return Envelope.of(data, source="sla-watcher", lead_id=lead_id)


def follow_up(lead_id: str, outcome: FollowUpOutcome, actor: str | None = None) -> Envelope[Any]:
    data = FollowUpLogged(lead_id=lead_id, follow_up_id=f"f-{uuid.uuid4().hex[:8]}", touch_type=TouchType.CALL,
                          actor=actor, occurred_at=NOW(), logged_at=NOW(), outcome=outcome)
    return Envelope.of(data, source="crm", lead_id=lead_id)


async def lead_status(client: httpx.AsyncClient, lead_id: str, until: Any = None, tries: int = 300) -> dict[str, Any]:
    """GET /leads/{id}, polled until ``until(body)`` holds (state the next event depends on is applied)."""
    import asyncio

    body: dict[str, Any] = {}
    for _ in range(tries):
        resp = await client.get(f"/leads/{lead_id}")
        body = resp.json() if resp.status_code == 200 else {}
        if body and (until is None or until(body)):
            return body
        await asyncio.sleep(0.05)
    return body


async def publish(kafka: str, *events: Envelope[Any]) -> None:
    async with EventProducer(kafka, client_id="router-test") as producer:
        for event in events:
            await producer.send(event)


async def routed(kafka: str, ids: list[str], count: int) -> list[Envelope[Any]]:
    return await collect_events(kafka, ["lead-routed"], lead_ids=ids, count=count, timeout=45,
                                event_type="lead-routed")
