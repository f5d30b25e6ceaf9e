"""`make demo`: a realistic mix of leads through a running LeadBridge (`make run`), and what became of them.

It creates an API key (intake admin API), posts leads from several channels (JSON from a site backend, a
browser's form post, a Google Ads lead form webhook, a Meta Lead Ads webhook whose lead intake fetches from
a tiny fake Graph API served here), logs follow-ups for some routed leads (a call in time, a rejection with
its reason, a qualification with BANT), leaves one sales-ready lead untouched until its first-touch SLA
breaches, then prints the routed leads, the breach and the funnel by channel (insights).

The CRM round trip: crm-sync delivers the assigned leads to a fake HubSpot served here (on the port `make run`
chose, CRM_SYNC_DEMO_HUBSPOT_URL) as contacts owned by the rep's HubSpot user; the "call in time" is logged
in that HubSpot and comes back through its signed webhook as follow-up-logged.

Bounded: it gives up waiting after --timeout seconds (default 150) and always ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
RUN_INFO = ROOT / ".devstack" / "demo-run.json"
DEMO_ENV = ROOT / "deploy" / "demo" / "demo.env"
PAGE = [""]  # the managers' page for this demo's leads: the last line the demo prints, however it ends
SERVICES = {"intake": 8001, "scoring": 8002, "router": 8003, "sla-watcher": 8004, "insights": 8005, "crm-sync": 8006}
# deploy/demo/crm-sync.yaml: the fake HubSpot portal crm-sync delivers to (demo values, not secrets)
DEMO_HUBSPOT_TOKEN, DEMO_HUBSPOT_SECRET, DEMO_HUBSPOT_PORTAL = "demo-hubspot-private-app-token", \
    "demo-hubspot-client-secret", 4242


def say(text: str = "") -> None:
    print(text, flush=True)


# -- configuration: what `make run` wrote, else deploy/demo/demo.env and the environment --------------------

def dev_token(secret: str | None) -> str | None:
    """A token with every scope, signed with the development secret of `make run` (AUTH_DEV_SECRET)."""
    if not secret:
        return None
    from leadbridge_events.auth import AuthSettings, mint_dev_token

    return mint_dev_token(AuthSettings(dev_secret=secret), subject="make-demo", ttl_seconds=3600)


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if RUN_INFO.exists():
        try:
            info = json.loads(RUN_INFO.read_text())
        except ValueError:
            info = {}
    demo_file: dict[str, str] = {}
    if DEMO_ENV.exists():
        for line in DEMO_ENV.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                demo_file[key.strip()] = value.strip()

    def pick(key: str) -> str | None:
        return info.get(key.lower()) or os.environ.get(key) or demo_file.get(key)

    urls = {name: f"http://127.0.0.1:{port}" for name, port in SERVICES.items()}
    if not args.intake_url:
        urls.update(info.get("services") or {})
    else:
        urls["intake"] = args.intake_url
    if args.insights_url:
        urls["insights"] = args.insights_url
    google_keys = json.loads(pick("INTAKE_GOOGLE_KEYS") or "{}")
    return {
        "urls": urls,
        "token": args.token or info.get("demo_token") or dev_token(pick("AUTH_DEV_SECRET")),
        "google_key": google_keys.get("4242") or google_keys.get("*"),
        "meta_secret": pick("INTAKE_META_APP_SECRET"),
        # only `make run` tells us where intake fetches Meta leads from, and where crm-sync's HubSpot is
        "graph_base_url": info.get("intake_meta_graph_base_url"),
        "hubspot_url": info.get("crm_sync_demo_hubspot_url"),
        "kafka": args.kafka or info.get("kafka_bootstrap_servers") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or "127.0.0.1:19092",
    }


# -- the leads --------------------------------------------------------------------------------------------

def json_leads(tag: str) -> list[dict[str, Any]]:
    """Site-backend JSON posts: who they are decides score, stage and routing (roster.example.yaml)."""
    def lead(key: str, **fields: Any) -> dict[str, Any]:
        return {"_demo": key, "consent": True, **fields}

    return [
        lead("de-cto-demo", email=f"jonas.weber@{tag}-kraftwerk.example", name="Jonas Weber",
             company="Kraftwerk Software GmbH", job_title="CTO", company_size=250, industry="software",
             country="DE", language="de", channel="paid", campaign="winter-demo-de", form_type="demo_request",
             utm={"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter-demo-de"}),
        lead("us-vp-pricing", email=f"dana.reed@{tag}-northwind.example", name="Dana Reed",
             company="Northwind Retail", job_title="VP Operations", company_size=400, industry="retail",
             country="US", language="en", channel="organic", campaign="pricing-page", form_type="pricing"),
        lead("gb-director-demo", email=f"sam.patel@{tag}-thamesfin.example", name="Sam Patel",
             company="Thames Fintech", job_title="Director of Engineering", company_size=600, industry="fintech",
             country="GB", language="en", channel="referral", campaign="partner-referrals",
             form_type="demo_request"),
        lead("fr-coo-quote", email=f"claire.martin@{tag}-lumiere.example", name="Claire Martin",
             company="Lumiere Sante", job_title="COO", company_size=150, industry="healthcare", country="FR",
             language="en", channel="event", campaign="saastr-europa", form_type="quote_request"),
        lead("student-whitepaper", email=f"alex.student{tag}@gmail.com", name="Alex Kim",
             job_title="Student", country="US", channel="seo", campaign="blog", form_type="whitepaper_download"),
        lead("au-manager-newsletter", email=f"mia.chen@{tag}-outback.example", name="Mia Chen",
             company="Outback Logistics", job_title="Marketing Manager", company_size=45, industry="logistics",
             country="AU", channel="mail", campaign="newsletter-nov", form_type="newsletter"),
    ]


def browser_form(tag: str) -> dict[str, str]:
    """What a plain HTML <form> on the website posts (form-encoded, utm_* hidden fields, a checkbox)."""
    return {"email": f"pieter.devries@{tag}-tulip.example", "first_name": "Pieter", "last_name": "de Vries",
            "company": "Tulip SaaS BV", "job_title": "CEO", "company_size": "80", "industry": "saas",
            "country": "NL", "form_type": "pricing", "channel": "organic", "utm_source": "newsletter",
            "utm_medium": "email", "utm_campaign": "pricing-nl", "consent": "on", "_hp": ""}


def google_lead(tag: str, google_key: str) -> dict[str, Any]:
    return {
        "lead_id": f"demo-{tag}-g1", "form_id": 4242, "campaign_id": 9001, "google_key": google_key,
        "is_test": False, "gcl_id": f"gclid-{tag}",
        "user_column_data": [
            {"column_id": "FULL_NAME", "column_name": "Full Name", "string_value": "Grace Hopper"},
            {"column_id": "WORK_EMAIL", "column_name": "Work Email", "string_value": f"grace@{tag}-navy.example"},
            {"column_id": "COMPANY_NAME", "column_name": "Company", "string_value": "Navy Analytics"},
            {"column_id": "JOB_TITLE", "column_name": "Job Title", "string_value": "Chief Data Officer"},
            {"column_id": "COMPANY_SIZE", "column_name": "Company size", "string_value": "300"},
            {"column_id": "COUNTRY", "column_name": "Country", "string_value": "US"},
        ],
    }


def meta_graph_lead(tag: str, leadgen_id: str) -> dict[str, Any]:
    """The lead as Meta's Graph API answers GET /<leadgen_id>."""
    return {
        "id": leadgen_id, "created_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "form_id": "555000", "ad_id": "777000", "campaign_name": "meta-lookalike-de", "is_organic": False,
        "field_data": [
            {"name": "full_name", "values": ["Lena Fischer"]},
            {"name": "email", "values": [f"lena.fischer@{tag}-isar.example"]},
            {"name": "company_name", "values": ["Isar Maschinenbau"]},
            {"name": "job_title", "values": ["Head of Procurement"]},
            {"name": "company_size", "values": ["150"]},
            {"name": "country", "values": ["DE"]},
        ],
    }


# -- a tiny fake Meta Graph API -----------------------------------------------------------------------------

class FakeGraph:
    """Answers GET /v21.0/<leadgen_id> with a lead, on the address intake was started with."""

    def __init__(self, base_url: str, leads: dict[str, dict[str, Any]]) -> None:
        parsed = urlparse(base_url)
        self.prefix = parsed.path.rstrip("/")
        self.fetched: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlparse(self.path).path
                leadgen_id = path[len(owner.prefix):].strip("/")
                body = leads.get(leadgen_id)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {"error": {"message": "unknown lead"}}).encode())
                if body:
                    owner.fetched.append(leadgen_id)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((parsed.hostname or "127.0.0.1", parsed.port or 80), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGraph:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def local_port_free(base_url: str | None) -> bool:
    if not base_url:
        return False
    parsed = urlparse(base_url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.port:
        return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", parsed.port))
        except OSError:
            return False
    return True


# -- talking to the system ----------------------------------------------------------------------------------

async def check_running(client: Any, urls: dict[str, str]) -> list[str]:
    down = []
    for name, url in urls.items():
        try:
            resp = await client.get(f"{url}/healthz", timeout=3)
            if resp.status_code != 200:
                down.append(f"{name} ({url}: HTTP {resp.status_code})")
        except Exception as exc:  # noqa: BLE001 - anything means "not there"
            down.append(f"{name} ({url}: {type(exc).__name__})")
    return down


async def wait_events(kafka: str, topic: str, lead_ids: list[str], count: int, timeout: float) -> list[Any]:
    from leadbridge_events.testing import collect_events

    try:
        return await collect_events(kafka, [topic], lead_ids=lead_ids, count=count, timeout=timeout)
    except TimeoutError:
        return []


async def find_lead_by_marker(kafka: str, marker: str, timeout: float) -> str | None:
    """A lead id captured from a platform (intake picks the id): find its lead-captured event by our tag."""
    from leadbridge_events.testing import collect_records

    try:
        records = await collect_records(kafka, ["lead-captured"], match=lambda r: marker.encode() in (r.value or b""),
                                        until=lambda m: len(m) >= 1, timeout=timeout)
    except TimeoutError:
        return None
    return records[0].key.decode()


def latest_by_lead(events: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for event in events:
        out[event.lead_id] = event.data
    return out


async def run(args: argparse.Namespace) -> int:
    cfg = load_settings(args)
    hubspot = start_fake_hubspot(cfg["hubspot_url"])
    try:
        return await run_with(args, cfg, hubspot)
    finally:
        if hubspot is not None:
            hubspot[1].stop()


def start_fake_hubspot(url: str | None) -> Any:
    """The fake HubSpot API crm-sync delivers to (services/crm-sync fakes), on the port `make run` chose."""
    if not local_port_free(url):
        return None
    from leadbridge_crm_sync.fakes import FakeHubSpot
    from leadbridge_crm_sync.testing import Served

    fake = FakeHubSpot(token=DEMO_HUBSPOT_TOKEN, portal_id=DEMO_HUBSPOT_PORTAL)
    return fake, Served(fake.app, urlparse(url).port).start()


async def run_with(args: argparse.Namespace, cfg: dict[str, Any], hubspot: Any) -> int:
    import httpx

    urls = cfg["urls"]
    started = datetime.now(UTC)
    deadline = time.monotonic() + args.timeout
    tag = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(timeout=10) as client:
        down = await check_running(client, urls)
        if down:
            say("error: LeadBridge is not running (or not all of it): " + ", ".join(down))
            say("Start it in another terminal with `make run`, wait for 'LeadBridge is running', then `make demo`.")
            return 2
        if not cfg["token"]:
            say("error: no access token: start the system with `make run` (it prints a demo token) or pass --token")
            return 2
        bearer = {"Authorization": f"Bearer {cfg['token']}"}
        intake, insights = urls["intake"], urls["insights"]
        PAGE[0] = f"{insights}/?since={started:%Y-%m-%d}"

        # 1. an API key for the site backend and the website's forms
        resp = await client.post(f"{intake}/v1/admin/keys", headers=bearer,
                                 json={"source": "website", "scopes": ["leads:write", "leads:read", "followups:write"]})
        if resp.status_code != 201:
            say(f"error: creating an API key failed: HTTP {resp.status_code} {resp.text[:300]}")
            say("Is the access token right (scope keys:admin)? `make run` prints one; or pass --token.")
            return 2
        key = resp.json()["api_key"]
        auth = {"X-API-Key": key}
        say(f"1. API key created via the admin API: {resp.json()['key_id']} (source website)")

        # 2. leads from several channels
        say("2. posting leads")
        leads: dict[str, str] = {}  # lead id -> demo label
        for body in json_leads(tag):
            label = body.pop("_demo")
            r = await client.post(f"{intake}/v1/leads", json=body, headers={**auth, "Idempotency-Key": f"{tag}-{label}"})
            r.raise_for_status()
            leads[r.json()["lead_id"]] = label
            say(f"   JSON post       {label:<24} -> {r.status_code} {r.json()['status']}")
        # the same person again (a repeat visit): an activity on the existing lead, not a new lead
        again = {**json_leads(tag)[1], "form_type": "demo_request"}
        again.pop("_demo")
        r = await client.post(f"{intake}/v1/leads", json=again, headers=auth)
        say(f"   JSON post       us-vp-pricing (again)    -> {r.status_code} {r.json().get('status')}")
        r = await client.post(f"{intake}/v1/leads", params={"api_key": key}, data=browser_form(tag),
                              headers={"Origin": "http://127.0.0.1"})
        r.raise_for_status()
        leads[r.json()["lead_id"]] = "nl-ceo-browser-form"
        say(f"   browser form    nl-ceo-browser-form      -> {r.status_code} {r.json()['status']} (form-encoded)")
        if cfg["google_key"]:
            r = await client.post(f"{intake}/v1/webhooks/google", json=google_lead(tag, cfg["google_key"]))
            if r.status_code == 200:
                leads[r.json()["lead_id"]] = "google-ads-form"
            say(f"   Google Ads      google-ads-form          -> {r.status_code} {r.json().get('status')}")
        else:
            say("   Google Ads      skipped: no INTAKE_GOOGLE_KEYS known")

        meta_note = await post_meta(client, cfg, intake, tag, leads)
        say(f"   Meta Lead Ads   {meta_note}")

        # 3. scoring and routing
        say("3. waiting for scoring and routing ...")
        ids = list(leads)
        scored = latest_by_lead(await wait_events(cfg["kafka"], "lead-scored", ids, len(ids),
                                                  max(5.0, min(45.0, deadline - time.monotonic()))))
        sales_ready = [lid for lid in ids if lid in scored and scored[lid].stage in ("mql", "sql")]
        routed = latest_by_lead(await wait_events(cfg["kafka"], "lead-routed", sales_ready, len(sales_ready),
                                                  max(5.0, min(30.0, deadline - time.monotonic()))))
        say(f"\n{'lead':<24} {'score':>5} {'grade':<5} {'stage':<8} {'routed to':<14} {'team':<11} {'rule':<16} reason")
        for lid in ids:
            s, r = scored.get(lid), routed.get(lid)
            who = (r.assignee_id or "-") if r else ("(not routed yet)" if s and s.stage != "nurture" else "-")
            say(f"{leads[lid]:<24} {getattr(s, 'score', '?'):>5} {getattr(s, 'grade', '?') or '':<5} "
                f"{getattr(s, 'stage', '?'):<8} {who:<14} {(r.team or '-') if r else '-':<11} "
                f"{(r.rule or '-') if r else '-':<16} {(r.reason if r else (s.reason if s else '')) or ''}"[:400])

        capacity = [lid for lid in sales_ready if lid in routed and routed[lid].reason_code == "capacity"]
        if capacity:
            say(f"\n   {len(capacity)} sales-ready lead(s) went back to nurture for capacity: the demo roster's reps "
                "have daily caps (services/router/roster.example.yaml), so repeated demos on one day fill them.")

        # 4. follow-ups: everything assigned is touched in time, except one lead
        assigned = [lid for lid in ids if lid in routed and routed[lid].outcome in ("assigned", "fallback_owner")]
        if not assigned:
            say("\nNo lead was assigned to a rep (roster caps used up today, or everyone off shift?): "
                "no SLA to watch. Restart with a fresh database or try again tomorrow.")
            await print_funnel(client, insights, started, bearer)
            return 1
        untouched = assigned[0]
        in_hubspot = await show_hubspot(hubspot, routed, leads, assigned, deadline)
        plans = [("call in time", {"touch_type": "call", "outcome": "connected"}),
                 ("rejected", {"touch_type": "call", "outcome": "rejected", "reason": "no budget until Q3"}),
                 ("qualified", {"touch_type": "meeting", "outcome": "qualified",
                                "bant": {"budget": True, "authority": True, "need": True, "timing": False}})]
        say(f"\n4. follow-ups (logged by the reps' CRM); {leads[untouched]} is left untouched")
        crm_call = None
        for i, lid in enumerate(assigned[1:]):
            what, body = plans[i] if i < len(plans) else ("email", {"touch_type": "email"})
            if i == 0 and lid in in_hubspot:  # this rep works in HubSpot: the call comes back through crm-sync
                r = await log_call_in_hubspot(client, hubspot[0], urls["crm-sync"], in_hubspot[lid],
                                              (routed[lid].assignee_crm_owner_ids or {}).get("hubspot"))
                crm_call = lid
                say(f"   {leads[lid]:<24} {what:<13} by {routed[lid].assignee_id:<8} -> {r.status_code} "
                    f"(logged in HubSpot; its webhook, signed v3, to crm-sync)")
                continue
            body = {**body, "actor": routed[lid].assignee_id, "occurred_at": datetime.now(UTC).isoformat()}
            r = await client.post(f"{intake}/v1/leads/{lid}/follow-ups", json=body, headers=auth)
            say(f"   {leads[lid]:<24} {what:<13} by {routed[lid].assignee_id:<8} -> {r.status_code}")
        if crm_call:
            back = await wait_events(cfg["kafka"], "follow-up-logged", [crm_call], 1, 15)
            if back:
                f = back[0]
                say(f"   back from HubSpot: follow-up-logged ({f.data.touch_type}, {f.data.outcome}, actor "
                    f"{f.data.actor}) emitted by {f.source}")

        # 5. the breach
        first = routed[untouched]
        say(f"\n5. waiting for the first-touch SLA of {leads[untouched]} (assigned to {first.assignee_id}, "
            f"policy {first.sla_policy}) to breach ...")
        left = deadline - time.monotonic()
        breaches = await wait_events(cfg["kafka"], "sla-breached", [untouched], 1, max(5.0, left))
        if breaches:
            b = breaches[0].data
            say(f"   BREACH: {b.kind} SLA of {leads[untouched]} — rep {b.assignee_id}, team {b.team}, "
                f"due {b.due_at:%H:%M:%S}, fired {b.fired_at:%H:%M:%S} UTC, escalate={b.escalate}")
            rerouted = await wait_events(cfg["kafka"], "lead-routed", [untouched], 2,
                                         max(3.0, min(15.0, deadline - time.monotonic())))
            if len(rerouted) >= 2:
                r2 = rerouted[-1].data
                say(f"   escalated: re-routed (attempt {r2.attempt}) to {r2.assignee_id or r2.outcome}: {r2.reason}")
            await wait_timeline(client, insights, untouched, "sla-breached", deadline, bearer)
        else:
            say(f"   no breach within {args.timeout:.0f}s (is the SLA policy longer than the demo? see "
                "deploy/demo/sla-policies.yaml)")
        say(f"\n   timeline: {insights}/v1/leads/{untouched}/timeline")
        await print_funnel(client, insights, started, bearer)
        return 0 if breaches else 1


async def show_hubspot(hubspot: Any, routed: dict[str, Any], leads: dict[str, str], assigned: list[str],
                       deadline: float) -> dict[str, str]:
    """Wait for crm-sync to put the assigned leads into the fake HubSpot; lead id -> contact id."""
    if hubspot is None:
        say("\n   HubSpot round trip skipped: crm-sync's fake HubSpot URL is not a free local port (use `make run`)")
        return {}
    fake = hubspot[0]
    found: dict[str, str] = {}
    until = min(deadline, time.monotonic() + 10)
    while time.monotonic() < until and len(found) < len(assigned):
        for lid in assigned:
            email = (routed[lid].profile.contact.email or "").lower()
            contact = fake.contact_by_email(email) if email else None
            if contact:
                found[lid] = contact["id"]
        await asyncio.sleep(0.1)
    say(f"\n   crm-sync put {len(found)} of {len(assigned)} assigned leads into HubSpot (a local fake) as contacts:")
    for lid, contact_id in found.items():
        props = fake.contacts[contact_id]["properties"]
        email = props["email"]
        lag = fake.received_at[email] - routed[lid].routed_at.timestamp()
        say(f"   {leads[lid]:<24} contact {contact_id}  hubspot_owner_id {props.get('hubspot_owner_id', '-'):<9} "
            f"(rep {routed[lid].assignee_id}), hs_lead_status {props.get('hs_lead_status')}, "
            f"{lag * 1000:.0f} ms after the routing")
    return found


async def log_call_in_hubspot(client: Any, fake: Any, crm_url: str, contact_id: str, owner: str | None) -> Any:
    from leadbridge_crm_sync.testing import hubspot_headers

    event = fake.log_engagement("calls", contact_id, owner,
                                hs_call_disposition="f240bbac-87c9-4f6e-bf70-924b57d47db7")  # Connected
    url = f"{crm_url}/v1/inbound/hubspot/demo"
    body = json.dumps([event]).encode()
    return await client.post(url, content=body, headers=hubspot_headers(DEMO_HUBSPOT_SECRET, url, body))


async def post_meta(client: Any, cfg: dict[str, Any], intake: str, tag: str, leads: dict[str, str]) -> str:
    if not cfg["meta_secret"]:
        return "skipped: INTAKE_META_APP_SECRET is not set on intake"
    if not local_port_free(cfg["graph_base_url"]):
        return ("skipped: intake's Graph API URL does not point at a free local port this demo can serve "
                "(start the system with `make run`, which sets INTAKE_META_GRAPH_BASE_URL)")
    leadgen_id = f"44{int(uuid.uuid4().hex[:10], 16)}"
    lead = meta_graph_lead(tag, leadgen_id)
    with FakeGraph(cfg["graph_base_url"], {leadgen_id: lead}) as graph:
        body = json.dumps({"object": "page", "entry": [{"id": "1", "time": int(time.time()), "changes": [
            {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "form_id": "555000", "page_id": "1"}}]}]})
        sig = hmac.new(cfg["meta_secret"].encode(), body.encode(), hashlib.sha256).hexdigest()
        r = await client.post(f"{intake}/v1/webhooks/meta", content=body,
                              headers={"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={sig}"})
        if r.status_code != 200:
            return f"webhook answered {r.status_code}: {r.text[:200]}"
        lead_id = await find_lead_by_marker(cfg["kafka"], f"{tag}-isar", 20)
    if not lead_id:
        return f"webhook queued it, but the fetch did not finish in 20 s (fetched: {graph.fetched})"
    leads[lead_id] = "meta-lead-ads"
    return f"meta-lead-ads            -> webhook 200, fetched from the fake Graph API at {cfg['graph_base_url']}"


async def wait_timeline(client: Any, insights: str, lead_id: str, event_type: str, deadline: float,
                        bearer: dict[str, str]) -> None:
    while time.monotonic() < min(deadline, time.monotonic() + 15):
        r = await client.get(f"{insights}/v1/leads/{lead_id}/timeline", headers=bearer)
        if r.status_code == 200 and any(e.get("type") == event_type for e in r.json().get("events", [])):
            return
        await asyncio.sleep(0.5)


async def print_funnel(client: Any, insights: str, since: datetime, bearer: dict[str, str]) -> None:
    await asyncio.sleep(1.0)  # let insights project the last follow-ups
    r = await client.get(f"{insights}/v1/funnel", params={"by": "channel", "since": since.isoformat()},
                         headers=bearer)
    if r.status_code != 200:
        say(f"\nfunnel: HTTP {r.status_code} {r.text[:200]}")
        return
    report = r.json()
    rows = report.get("rows", report) if isinstance(report, dict) else report
    if isinstance(rows, dict):
        rows = list(rows.values())
    cols = ["captured", "mql", "nurtured", "routed", "first_touch_within_sla", "sla_at_risk", "sla_breached",
            "rejected", "qualified"]
    say("\n6. funnel by channel (this demo's leads, from insights GET /v1/funnel?by=channel&since=...)")
    say(f"   {'channel':<10}" + "".join(f"{c.replace('first_touch_within_sla', 'touch_in_sla'):>14}" for c in cols))
    total = report.get("total") if isinstance(report, dict) else None
    for row in [*rows, *([total] if total else [])]:
        if not isinstance(row, dict):
            continue
        name = row.get("key") or row.get("value") or row.get("channel") or row.get("group") or "total"
        say(f"   {str(name):<10}" + "".join(f"{str(row.get(c, '')):>14}" for c in cols))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description="Post a realistic mix of leads to a running LeadBridge (`make run`), log "
        "follow-ups, wait for one SLA breach, and print the routed leads, the breach and the funnel.")
    parser.add_argument("--timeout", type=float, default=150.0, help="give up waiting after this many seconds")
    parser.add_argument("--token", help="an access token with every scope (default: the demo token of `make run`)")
    parser.add_argument("--intake-url", help="default http://127.0.0.1:8001")
    parser.add_argument("--insights-url", help="default http://127.0.0.1:8005")
    parser.add_argument("--kafka", help="Kafka bootstrap servers (default: what `make run` used, else 127.0.0.1:19092)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout + 60))
    except TimeoutError:
        say(f"error: the demo did not finish within {args.timeout + 60:.0f}s")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if PAGE[0]:
            say(f"\nThe managers' page (speed to lead, trends, funnel, rep load, live lists, find a lead): {PAGE[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
