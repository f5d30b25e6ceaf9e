"""Pending platform fetches survive a restart; status follows scoring and routing; CLI keys; metrics; limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadRouted, LeadScored, Stage
from leadbridge_events.producer import EventProducer
from leadbridge_intake.tables import pending_fetches
from leadbridge_intake.testing import META_SECRET, make_settings, new_key, running
from sqlalchemy import select

pytestmark = pytest.mark.integration


async def test_failed_fetch_is_kept_across_a_restart(fresh_database_url, kafka_bootstrap, platforms):
    leadgen_id = f"dur{uuid.uuid4().int % 10**12}"
    platforms.leads[leadgen_id] = {"id": leadgen_id, "field_data": [
        {"name": "email", "values": [f"{leadgen_id}@meta.example"]}]}
    body = json.dumps({"object": "page", "entry": [{"id": "1", "changes": [
        {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "form_id": "1"}}]}]}).encode()
    sig = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    settings = make_settings(fresh_database_url, kafka_bootstrap, platforms)
    platforms.fail_next = 10**6  # the Graph API is down for as long as the first instance lives
    try:
        async with running(settings) as (client, app):
            r = await client.post("/v1/webhooks/meta", content=body, headers={"X-Hub-Signature-256": sig})
            assert r.status_code == 200
            for _ in range(100):
                async with app.state.runtime.sessions() as s:
                    row = (await s.execute(select(pending_fetches)
                                           .where(pending_fetches.c.platform_lead_id == leadgen_id))).one()
                if row.attempts >= 2:
                    break
                await asyncio.sleep(0.05)
            assert row.attempts >= 2 and row.done_at is None and "503" in row.last_error
    finally:
        platforms.fail_next = 0
    async with running(settings) as (_client, app):  # a new process picks the stored fetch up
        for _ in range(200):
            async with app.state.runtime.sessions() as s:
                row = (await s.execute(select(pending_fetches)
                                       .where(pending_fetches.c.platform_lead_id == leadgen_id))).one()
            if row.done_at is not None:
                break
            await asyncio.sleep(0.05)
        assert row.lead_id is not None and row.last_error is None


async def test_status_follows_scoring_and_routing(fresh_database_url, kafka_bootstrap, unique_name):
    settings = make_settings(fresh_database_url, kafka_bootstrap)
    async with running(settings, consume=True, group_id=unique_name, auto_offset_reset="latest") as (client, app):
        runtime = app.state.runtime
        await runtime.kafka_ready.wait()
        await runtime.runner.wait_assigned()
        key = await new_key(client)
        h = {"X-API-Key": key}
        lead_id = (await client.post("/v1/leads", headers=h, json={"email": f"{unique_name}@x.io"})).json()["lead_id"]
        now = datetime.now(UTC)
        async with EventProducer(kafka_bootstrap) as producer:
            await producer.send(Envelope.of(LeadScored(lead_id=lead_id, scored_at=now, score=80, grade="A",
                                                       stage=Stage.MQL, model_version="t"),
                                            source="scoring", lead_id=lead_id))
            await producer.send(Envelope.of(LeadRouted(lead_id=lead_id, routed_at=now, assignee_id="rep-1",
                                                       reason="round robin"), source="router", lead_id=lead_id))
        for _ in range(200):
            view = (await client.get(f"/v1/leads/{lead_id}", headers=h)).json()
            if view["status"] == "routed":
                break
            await asyncio.sleep(0.05)
        assert view["status"] == "routed" and view["status_detail"]["assignee_id"] == "rep-1"


def test_cli_creates_lists_and_revokes_keys(fresh_database_url):
    env = {**os.environ, "DATABASE_URL": fresh_database_url}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "leadbridge_intake", "keys", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("create", "--source", "hubspot", "--scope", "followups:write")
    key_id = out.split("key_id=")[1].split()[0]
    secret = out.split("api_key=")[1].split()[0]
    listed = cli("list")
    assert key_id in listed and "active" in listed and secret not in listed
    assert f"revoked {key_id}" in cli("revoke", key_id)
    assert "revoked" in cli("list")


async def test_streamed_body_over_limit_and_metrics(intake):
    client, _app, key = intake

    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    r = await client.post("/v1/leads", headers={"X-API-Key": key, "Content-Type": "application/json",
                                                "Origin": "https://www.example.com"}, content=chunks())
    assert r.status_code == 413 and r.headers["access-control-allow-origin"] == "https://www.example.com"
    await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": f"{uuid.uuid4().hex}@m.io",
                                                                     "channel": "webinar-partner-x"})
    text = (await client.get("/metrics")).text
    assert 'intake_leads_accepted_total{channel="other",source="website"}' in text
    assert 'intake_rejected_total{reason="body_too_large"}' in text
    assert "@m.io" not in text
