"""Two processes of every service on a three-broker Kafka cluster.

Intake runs twice (two ports, the leads posted to both in turn), and scoring, router, sla-watcher and
insights run twice each in one consumer group per service, over one database. The guarantees of one process
hold for two: seed 004's caps (three reps who can take 6 leads a week, 30 leads -> 18 routed, 6 each, the
rest back to nurture), weighted shares within 2 percentage points, each due breach fired exactly once. A
broker killed -9 in the middle of the flow (and restarted) and a replica killed -9 (its partitions move
to the other) lose no lead, route none twice, and no client sees an error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from leadbridge_contracts.topics import LEAD_ROUTED, SLA_BREACHED
from leadbridge_events.testing import auth_headers, collect_records, test_token

from .harness import events_so_far, own_database, running_system

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
ADMIN_TOKEN = test_token(["keys:admin"])  # the services verify tokens of the test secret (root conftest)
CAP, REPS, CAPPED_LEADS = 6, 3, 30
WEIGHTS = {"w-five": 5, "w-three": 3, "w-two": 2}


@pytest.fixture(scope="module")
def system(stack, kafka_cluster, tmp_path_factory):
    with own_database(stack) as database_url:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap_servers,
            "DATABASE_URL": database_url,
            "ROUTER_ROSTER_FILE": str(HERE / "cluster-roster.yaml"),
            "SLA_POLICIES_FILE": str(HERE / "cluster-sla-policies.yaml"),
            "LOG_LEVEL": "WARNING",
        }
        with running_system(env, tmp_path_factory.mktemp("replica-logs"), replicas=2) as running:
            yield running


@pytest.fixture(scope="module")
def api_key(system):
    resp = httpx.post(f"{system.url('intake')}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                      json={"source": "replicas", "scopes": ["leads:write", "leads:read"]})
    assert resp.status_code == 201, resp.text
    return resp.json()["api_key"]


def lead(country: str) -> dict:
    tag = uuid.uuid4().hex[:10]
    return {
        "email": f"cto-{tag}@acme-{tag}.example", "name": "Pat Example", "company": f"Acme {tag}",
        "job_title": "CTO", "company_size": 250, "industry": "software", "country": country, "language": "en",
        "channel": "paid", "campaign": "replicas", "form_type": "demo_request", "consent": True,
    }


async def post_leads(system, api_key, country: str, count: int, *, midway=None) -> list[str]:
    """Post ``count`` leads to the two intake processes in turn; ``midway()`` runs after half of them.
    Every response must be a 202: whatever fails behind intake, its clients see no error."""
    intakes = [svc.url for svc in system.replicas("intake")]
    lead_ids, statuses = [], Counter()
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(count):
            if i == count // 2 and midway is not None:
                await midway()
            resp = await client.post(f"{intakes[i % len(intakes)]}/v1/leads", json=lead(country),
                                     headers={"X-API-Key": api_key, "Idempotency-Key": uuid.uuid4().hex})
            statuses[resp.status_code] += 1
            if resp.status_code == 202:
                lead_ids.append(resp.json()["lead_id"])
    assert statuses == {202: count}, f"intake answered {dict(statuses)}"
    return lead_ids


async def until_each_has_one(bootstrap: str, topic: str, lead_ids: list[str], timeout: float) -> None:
    wanted = {lead.encode() for lead in lead_ids}
    await collect_records(bootstrap, [topic], match=lambda r: r.key in wanted,
                          until=lambda found: {r.key for r in found} >= wanted, timeout=timeout)


async def routings(bootstrap: str, lead_ids: list[str], timeout: float = 120) -> dict[str, list]:
    """Each lead's lead-routed decisions (distinct events), once every lead has one."""
    await until_each_has_one(bootstrap, LEAD_ROUTED.name, lead_ids, timeout)
    await asyncio.sleep(2)  # a second routing of some lead would show up by now
    decisions: dict[str, dict] = defaultdict(dict)
    for event in await events_so_far(bootstrap, LEAD_ROUTED, set(lead_ids)):
        decisions[event.data.lead_id][event.id] = event.data
    return {lead_id: list(decisions[lead_id].values()) for lead_id in lead_ids}


async def test_caps_and_breaches_hold_while_a_broker_is_killed_and_restarted(system, api_key, kafka_cluster):
    bootstrap = kafka_cluster.bootstrap_servers

    async def kill_a_broker():
        kafka_cluster.kill(1)  # kill -9 in the middle of the flow

    lead_ids = await post_leads(system, api_key, "FR", CAPPED_LEADS, midway=kill_a_broker)
    await asyncio.to_thread(kafka_cluster.restart, 1)
    routed = await routings(bootstrap, lead_ids)

    assert not [lead for lead, ds in routed.items() if len(ds) != 1], "every lead routed exactly once"
    outcomes = Counter(ds[0].outcome for ds in routed.values())
    assert outcomes == {"assigned": CAP * REPS, "returned_to_nurture": CAPPED_LEADS - CAP * REPS}
    per_rep = Counter(ds[0].assignee_id for ds in routed.values() if ds[0].outcome == "assigned")
    assert per_rep == {"cap-ana": CAP, "cap-ben": CAP, "cap-cyd": CAP}, "each weekly cap holds exactly"

    assigned = [lead for lead, ds in routed.items() if ds[0].outcome == "assigned"]
    await until_each_has_one(bootstrap, SLA_BREACHED.name, assigned, timeout=90)
    await asyncio.sleep(3)  # two watchers firing one deadline would show a second breach by now
    breaches = Counter(e.data.lead_id for e in {e.id: e for e in
                                                 await events_so_far(bootstrap, SLA_BREACHED, set(assigned))}
                       .values())
    assert breaches == {lead: 1 for lead in assigned}, "each due breach fires exactly once"
    assert kafka_cluster.running() == [0, 1, 2]
    assert system.alive()


async def test_weighted_shares_hold_and_a_killed_replica_hands_its_partitions_over(system, api_key,
                                                                                  kafka_cluster):
    async def kill_one_replica_each():
        for name in ("scoring#2", "router#2", "sla-watcher#2", "insights#2"):
            system.kill(name)  # kill -9: its partitions go to the other replica of its group

    lead_ids = await post_leads(system, api_key, "DE", 60, midway=kill_one_replica_each)
    routed = await routings(kafka_cluster.bootstrap_servers, lead_ids, timeout=150)

    assert not [lead for lead, ds in routed.items() if len(ds) != 1], "every lead routed exactly once"
    shares = Counter(ds[0].assignee_id for ds in routed.values())
    total = sum(WEIGHTS.values())
    for rep, weight in WEIGHTS.items():
        assert abs(shares[rep] / len(lead_ids) - weight / total) <= 0.02, f"{rep}: {dict(shares)}"
    # the surviving insights replica keeps the read model up
    async with httpx.AsyncClient(headers=auth_headers(["insights:read"])) as client:
        for _ in range(60):
            resp = await client.get(f"{system.url('insights')}/v1/leads/{lead_ids[-1]}/timeline")
            if resp.status_code == 200 and "lead-routed" in resp.text:
                break
            await asyncio.sleep(0.5)
    assert resp.status_code == 200 and "lead-routed" in resp.text, resp.text[:500]
