"""crm-sync fixtures: the fakes (HubSpot, Salesforce, a webhook receiver) on local ports, and the service
built by its factory, run through its lifespan, on a fresh database and the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import Contact, LeadProfile, LeadRouted
from leadbridge_crm_sync.app import create_app
from leadbridge_crm_sync.config import CrmConfig
from leadbridge_crm_sync.fakes import FakeHubSpot, FakeSalesforce
from leadbridge_crm_sync.settings import CrmSyncSettings
from leadbridge_crm_sync.testing import Served, WebhookReceiver
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import test_token

ADMIN = test_token(["crm:admin"])  # an access token of the admin API
HS_SECRET = "hubspot-app-client-secret"
ORG_ID = "00D000000000042AAA"


@dataclass
class Fakes:
    hubspot: FakeHubSpot
    salesforce: FakeSalesforce
    receiver: WebhookReceiver
    hubspot_server: Served
    salesforce_server: Served
    receiver_server: Served


@pytest.fixture(scope="session")
def fakes() -> Any:
    hubspot, salesforce, receiver = FakeHubSpot(), FakeSalesforce(), WebhookReceiver()
    servers = [Served(hubspot.app).start(), Served(salesforce.app).start(), Served(receiver.app).start()]
    salesforce.base = servers[1].url
    yield Fakes(hubspot, salesforce, receiver, *servers)
    for s in servers:
        s.stop()


def crm_config(fakes: Fakes, team: str) -> CrmConfig:
    return CrmConfig.model_validate({
        "hubspot": {"main": {"portal_id": fakes.hubspot.portal_id, "base_url": fakes.hubspot_server.url,
                             "token": fakes.hubspot.token, "client_secret": HS_SECRET,
                             "requests_per_second": 50, "burst": 50}},
        "salesforce": {"acme": {"organization_id": ORG_ID, "login_url": fakes.salesforce_server.url,
                                "client_id": fakes.salesforce.client_id,
                                "client_secret": fakes.salesforce.client_secret}},
        "teams": {f"{team}-hs": ["hubspot:main"], f"{team}-sf": ["salesforce:acme"],
                  f"{team}-both": ["hubspot:main", "salesforce:acme"]},
    })


@dataclass
class Crm:
    client: httpx.AsyncClient
    app: FastAPI
    team: str
    bootstrap: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    async def publish(self, *events: Envelope[Any]) -> None:
        async with EventProducer(self.bootstrap) as producer:
            for e in events:
                await producer.send(e)

    async def subscribe(self, receiver: WebhookReceiver, url: str, **body: Any) -> dict[str, Any]:
        r = await self.client.post("/v1/subscriptions", headers=self.auth,
                                   json={"url": url, "event_types": ["lead-routed"], "teams": [self.team + "-hs",
                                         self.team + "-sf", self.team + "-both", self.team], **body})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        return r.json()

    async def deliveries(self, lead_id: str) -> list[dict[str, Any]]:
        r = await self.client.get(f"/v1/leads/{lead_id}/deliveries", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()["deliveries"]


async def wait_consuming(app: FastAPI) -> None:
    runtime = app.state.runtime
    await asyncio.wait_for(runtime.kafka_ready.wait(), timeout=60)
    while runtime.runner is None:
        await asyncio.sleep(0.05)
    await runtime.runner.wait_assigned()
    consumer = runtime.runner._consumer
    for tp in consumer.assignment():
        await consumer.position(tp)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


def make_settings(database_url: str, bootstrap: str, **overrides: Any) -> CrmSyncSettings:
    values: dict[str, Any] = dict(
        DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap, CRM_SYNC_ADMIN_TOKEN=ADMIN,
        CRM_SYNC_RETRY_SCHEDULE_SECONDS="[0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]",
        CRM_SYNC_RETRY_JITTER=0, CRM_SYNC_SENDER_POLL_SECONDS=0.05, CRM_SYNC_HTTP_TIMEOUT_SECONDS=1.0,
        CRM_SYNC_GAUGE_REFRESH_SECONDS=0.2, CRM_SYNC_MAX_RETRY_AFTER_SECONDS=2,
    )
    values.update(overrides)
    return CrmSyncSettings(**values)


@pytest.fixture
async def crm(fresh_database_url: str, kafka_bootstrap: str, fakes: Fakes, request) -> AsyncIterator[Crm]:
    team = "t" + uuid.uuid4().hex[:8]
    overrides = getattr(request, "param", {}) or {}
    settings = make_settings(fresh_database_url, kafka_bootstrap, **overrides)
    app = create_app(settings, config=crm_config(fakes, team), group_id=f"crm-{team}", auto_offset_reset="latest")
    async with app.router.lifespan_context(app):
        await wait_consuming(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm-sync") as client:
            yield Crm(client, app, team, kafka_bootstrap)


def routed(team: str, *, lead_id: str | None = None, rep: str = "ada", hubspot_owner: str = "71000001",
           sf_owner: str = "005000000000001AAA", attempt: int = 1, email: str | None = "__auto__",
           outcome: str = "assigned") -> Envelope[Any]:
    lead_id = lead_id or f"lead-{uuid.uuid4().hex[:12]}"
    email = f"{lead_id}@example.com" if email == "__auto__" else email
    data = LeadRouted(
        lead_id=lead_id, routed_at=datetime.now(UTC), outcome=outcome, assignee_id=rep,
        assignee_name=rep.title(), team=team, pool=team, rule="everyone", reason=f"round robin in {team}",
        attempt=attempt, assignee_crm_owner_ids={"hubspot": hubspot_owner, "salesforce": sf_owner}, score=72,
        grade="B", profile=LeadProfile(contact=Contact(email=email, name="Pat Example"), company="Acme",
                                       job_title="CTO", country="DE"))
    return Envelope.of(data, source="router", lead_id=lead_id)
