"""End to end, the services as processes: no secret or personal data in any log or metric, and every API
fuzzed from its OpenAPI document (schemathesis) with valid credentials: no 5xx, no answer the schema
contradicts.

The log scan runs first: a demo flow (leads with names, emails and phones through the API, a browser form,
the Google, Meta and LinkedIn webhooks with their secrets, the fetcher's access tokens, follow-ups, roster and
insights reads), then every service's log and /metrics are searched for each secret and personal value.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from leadbridge_devstack.kafka import KafkaBroker, MissingJavaError
from leadbridge_devstack.ports import free_port
from leadbridge_devstack.system import SERVICES, start_system
from leadbridge_events.testing import TEST_DEV_SECRET, auth_headers, collect_events, test_token
from leadbridge_intake.testing import FakePlatforms

from .harness import own_database

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
RUN = uuid.uuid4().hex[:8]
SECRETS = {
    "INTAKE_META_APP_SECRET": f"meta-app-secret-{RUN}",
    "INTAKE_META_VERIFY_TOKEN": f"meta-verify-{RUN}",
    "INTAKE_META_ACCESS_TOKEN": "meta-token",  # what the fake Graph API expects (in the Authorization header)
    "INTAKE_LINKEDIN_CLIENT_SECRET": f"linkedin-secret-{RUN}",
    "INTAKE_LINKEDIN_ACCESS_TOKEN": "li-token",
    "INSIGHTS_SESSION_SECRET": f"insights-session-secret-{RUN}",
    "INSIGHTS_OIDC_CLIENT_SECRET": f"insights-client-secret-{RUN}",
}
GOOGLE_KEY = f"google-key-{RUN}"
PEOPLE = [  # name, email, phone (as typed), phone (E.164, as stored)
    (f"Ottilie Quast{RUN[:3]}", f"ottilie.{RUN}@quast-gmbh.example", "+49 151 2345 6789", "+4915123456789"),
    (f"Bartholomew Nkem{RUN[:3]}", f"b.nkem.{RUN}@nkem.example", "(415) 555-0134", "+14155550134"),
    (f"Yusra Lindqvist{RUN[:3]}", f"yusra.{RUN}@lindqvist.example", "+46 70 123 45 67", "+46701234567"),
]


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def own_broker(stack):
    """A broker of this module's own: fresh consumer groups would otherwise read every earlier test's events."""
    try:
        broker = KafkaBroker.throwaway()
    except MissingJavaError:
        yield stack.bootstrap_servers
        return
    yield broker.bootstrap_servers
    broker.remove()


@pytest.fixture(scope="module")
def platforms():
    fake = FakePlatforms()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=fake.port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def system(stack, own_broker, platforms, tmp_path_factory):
    with own_database(stack) as database_url:
        yield from _system(database_url, own_broker, platforms, tmp_path_factory)


def _system(database_url, own_broker, platforms, tmp_path_factory):
    suffix = uuid.uuid4().hex[:6]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": own_broker,
        "DATABASE_URL": database_url,
        "AUTH_DEV_SECRET": TEST_DEV_SECRET,
        **SECRETS,
        "INTAKE_GOOGLE_KEYS": json.dumps({"*": GOOGLE_KEY}),
        "INTAKE_META_GRAPH_BASE_URL": f"{platforms.base}/graph",
        "INTAKE_LINKEDIN_API_BASE_URL": f"{platforms.base}/li",
        "INTAKE_FETCH_POLL_SECONDS": "0.2",
        "ROUTER_ROSTER_FILE": str(HERE / "roster.yaml"),
        "SLA_POLICIES_FILE": str(HERE / "sla-policies.yaml"),
        "SCORING_GROUP_ID": f"scoring-{suffix}",
        "ROUTER_GROUP_ID": f"router-{suffix}",
        "INSIGHTS_GROUP_ID": f"insights-{suffix}",
        "LOG_LEVEL": "DEBUG",  # the most a service would ever log
    }
    log_dir = tmp_path_factory.mktemp("e2e-secret-logs")
    running = start_system(env, {s.name: free_port() for s in SERVICES}, log_dir=log_dir)
    running.log_dir = log_dir  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api_key(system):
    resp = httpx.post(f"{system.url('intake')}/v1/admin/keys", headers=auth_headers(["keys:admin"]),
                      json={"source": "website", "scopes": ["leads:write", "leads:read", "followups:write"]})
    assert resp.status_code == 201, resp.text
    return resp.json()["api_key"]


def lead(person: tuple[str, str, str, str], **extra) -> dict:
    name, email, phone, _ = person
    return {"email": email, "name": name, "phone": phone, "company": f"Acme {RUN}", "job_title": "CTO",
            "company_size": 250, "industry": "software", "country": "DE", "channel": "paid",
            "form_type": "demo_request", "consent": True, "language": "de", "campaign": "e2e", **extra}


async def demo_flow(system, api_key, platforms, bootstrap: str) -> tuple[list[str], list[str]]:
    """The flow of `make demo`, shortened. Returns the lead ids and every secret value it used."""
    intake, token = system.url("intake"), test_token()
    key_header = {"X-API-Key": api_key}
    lead_ids = []
    async with httpx.AsyncClient(timeout=30) as client:
        for person in PEOPLE[:2]:
            r = await client.post(f"{intake}/v1/leads", json=lead(person),
                                  headers={**key_header, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 202, r.text
            lead_ids.append(r.json()["lead_id"])
        invalid = await client.post(f"{intake}/v1/leads", json={**lead(PEOPLE[0]), "email": PEOPLE[0][1] + "@@"},
                                    headers=key_header)
        assert invalid.status_code == 422 and PEOPLE[0][1] not in invalid.text
        form = {"email": PEOPLE[2][1], "name": PEOPLE[2][0], "phone": PEOPLE[2][2], "utm_source": "newsletter"}
        r = await client.post(f"{intake}/v1/leads", params={"api_key": api_key}, data=form)
        assert r.status_code == 202, r.text
        google = {"lead_id": f"g-{RUN}", "form_id": "4242", "google_key": GOOGLE_KEY, "user_column_data": [
            {"column_id": "EMAIL", "string_value": f"google.{PEOPLE[0][1]}"},
            {"column_id": "FULL_NAME", "string_value": PEOPLE[0][0]},
            {"column_id": "PHONE_NUMBER", "string_value": PEOPLE[0][2]}]}
        r = await client.post(f"{intake}/v1/webhooks/google", json=google)
        assert r.status_code == 200, r.text
        wrong = await client.post(f"{intake}/v1/webhooks/google", json={**google, "google_key": "nope"})
        assert wrong.status_code == 403 and GOOGLE_KEY not in wrong.text
        # Meta: handshake, then a signed notification whose lead intake fetches with its access token
        r = await client.get(f"{intake}/v1/webhooks/meta", params={
            "hub.mode": "subscribe", "hub.verify_token": SECRETS["INTAKE_META_VERIFY_TOKEN"], "hub.challenge": "42"})
        assert r.status_code == 200
        leadgen_id = str(uuid.uuid4().int)[:16]
        platforms.leads[leadgen_id] = {"id": leadgen_id, "created_time": "2026-11-23T10:00:00+0000",
                                       "form_id": "555", "field_data": [
                                           {"name": "email", "values": [f"meta.{PEOPLE[1][1]}"]},
                                           {"name": "full_name", "values": [PEOPLE[1][0]]},
                                           {"name": "phone_number", "values": [PEOPLE[1][2]]}]}
        body = json.dumps({"object": "page", "entry": [{"id": "1", "time": 1, "changes": [{
            "field": "leadgen", "value": {"leadgen_id": leadgen_id, "form_id": "555"}}]}]}).encode()
        r = await client.post(f"{intake}/v1/webhooks/meta", content=body, headers={
            "X-Hub-Signature-256": "sha256=" + sign(SECRETS["INTAKE_META_APP_SECRET"], body)})
        assert r.status_code == 200 and r.json()["queued"] == 1, r.text
        challenge = str(uuid.uuid4())
        r = await client.get(f"{intake}/v1/webhooks/linkedin", params={"challengeCode": challenge})
        assert r.json()["challengeResponse"] == sign(SECRETS["INTAKE_LINKEDIN_CLIENT_SECRET"], challenge.encode())
        # the routed lead is followed up; the roster and insights are read with the access token
        routed = await collect_events(bootstrap, ["lead-routed"], lead_ids=lead_ids[:1], count=1, timeout=60)
        assert routed
        r = await client.post(f"{intake}/v1/leads/{lead_ids[0]}/follow-ups", headers=key_header,
                              json={"touch_type": "call", "outcome": "connected", "note": f"spoke to {PEOPLE[0][0]}"})
        assert r.status_code == 202, r.text
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get(f"{system.url('router')}/roster", headers=bearer)).status_code == 200
        assert (await client.get(f"{system.url('scoring')}/model", headers=bearer)).status_code == 200
        for _ in range(100):
            r = await client.get(f"{system.url('insights')}/v1/leads/{lead_ids[0]}/timeline", headers=bearer)
            if r.status_code == 200 and any(e["type"] == "follow-up-logged" for e in r.json()["events"]):
                break
            await asyncio.sleep(0.3)
        assert r.status_code == 200, r.text
        assert (await client.get(f"{system.url('insights')}/v1/funnel", headers=bearer)).status_code == 200
        for _ in range(100):  # the Meta lead was fetched with the access token
            if platforms.calls and any(c.startswith("/graph/") for c in platforms.calls):
                break
            await asyncio.sleep(0.2)
        assert any(c == f"/graph/{leadgen_id}" for c in platforms.calls)
    return lead_ids, [token, api_key, GOOGLE_KEY, TEST_DEV_SECRET, *SECRETS.values()]


async def test_no_secret_or_personal_data_in_any_log_or_metric(system, api_key, platforms, own_broker):
    _leads, secrets = await demo_flow(system, api_key, platforms, own_broker)
    await asyncio.sleep(2.0)  # let the consumers log what they do with the last events
    personal = [value for person in PEOPLE for value in person]
    personal += [p[1].split("@")[0] for p in PEOPLE] + [p[0].split()[1] for p in PEOPLE]  # local parts, surnames
    texts = {log.name: log.read_text(errors="replace") for log in sorted(system.log_dir.glob("*.log"))}
    assert len(texts) == len(SERVICES) and all(texts.values()), "every service logs something"
    async with httpx.AsyncClient() as client:
        for name, svc in system.services.items():
            texts[f"{name} /metrics"] = (await client.get(f"{svc.url}/metrics")).text
    hits = [(where, value) for where, text in texts.items() for value in secrets + personal
            if value and value.lower() in text.lower()]
    digits = {re.sub(r"\D", "", p[3]) for p in PEOPLE}
    hits += [(where, number) for where, text in texts.items() for number in digits
             if number in re.sub(r"[^\d\n]", "", text)]
    assert hits == [], f"{len(hits)} secret or personal values found: {hits[:10]}"


@pytest.mark.parametrize("service", [spec.name for spec in SERVICES])
def test_fuzz_the_openapi_document_with_valid_credentials(system, api_key, service):
    """Bounded (a few examples per operation, positive and negative), derandomized: a fixed, fast sample."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    headers = {**auth_headers(), "X-API-Key": api_key}
    schema = schemathesis.openapi.from_url(f"{system.url(service)}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if service == "intake" and operation.path.startswith("/v1/admin/keys/") and operation.method == "delete":
            continue  # could revoke the fuzzer's own key
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=8, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(headers=headers, timeout=30)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                         content_type_conformance], headers=headers)

            try:
                check()
            except Exception as exc:  # noqa: BLE001 - collected, reported together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:1500])
    assert operations, f"{service}: no operation in its OpenAPI document"
    assert not failures, "\n\n".join(failures)
