"""One trace per lead: the real runtimes of intake, scoring, router and sla-watcher in this process, over the
real Kafka and PostgreSQL, with an in-memory span exporter. A lead posted to intake leaves ONE trace: the
HTTP request, each outbox relay's send, and each service's handler, linked parent to child through the
outbox rows and the Kafka record headers; and the trace id is in the JSON log lines of its handlers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from leadbridge_events.logs import configure_logging
from leadbridge_events.testing import recorded_spans
from leadbridge_intake.testing import make_settings, new_key, running
from leadbridge_router.app import SERVICE as ROUTER
from leadbridge_router.settings import RouterSettings
from leadbridge_scoring.app import SERVICE as SCORING
from leadbridge_scoring.settings import ScoringSettings
from leadbridge_sla_watcher.app import SERVICE as SLA_WATCHER
from leadbridge_sla_watcher.settings import WatcherSettings
from opentelemetry.trace import SpanKind

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def sales_ready_lead() -> dict:
    tag = uuid.uuid4().hex[:10]
    return {"email": f"cto-{tag}@acme-{tag}.example", "name": "Pat Example", "company": f"Acme {tag}",
            "job_title": "CTO", "company_size": 250, "industry": "software", "country": "DE", "language": "de",
            "channel": "paid", "campaign": "trace", "form_type": "demo_request", "consent": True}


async def wait_for_span(spans, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [s for s in spans.get_finished_spans() if predicate(s)]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise TimeoutError("span not found; finished: " + ", ".join(sorted({s.name for s in spans.get_finished_spans()})))


@pytest.fixture
def json_logs(monkeypatch):
    """The JSON log lines written meanwhile (the services' own log configuration)."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("e2e", level="INFO")
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_one_trace_links_intake_scoring_router_and_sla_watcher(fresh_database_url, kafka_bootstrap,
                                                                    json_logs, unique_name):
    common = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": fresh_database_url}
    groups = {name: f"{name}-{unique_name}" for name in ("scoring", "router", "sla-watcher")}
    with recorded_spans() as spans:  # before the apps are built: they are instrumented when built
        services = [(SCORING, ScoringSettings(**common)),
                    (ROUTER, RouterSettings(**common, ROUTER_ROSTER_FILE=str(HERE / "roster.yaml"))),
                    (SLA_WATCHER, WatcherSettings(**common, SLA_POLICIES_FILE=str(HERE / "sla-policies.yaml")))]
        async with contextlib.AsyncExitStack() as stack:
            for service, settings in services:  # each service's real runtime (handlers, relay, hooks, tasks)
                runtime = await stack.enter_async_context(service.running(
                    settings, group_id=groups[service.name], auto_offset_reset="latest"))
                await asyncio.wait_for(runtime.kafka_ready.wait(), 60)
                await runtime.runner.wait_assigned(60)
            async with running(make_settings(fresh_database_url, kafka_bootstrap)) as (client, _app):
                key = await new_key(client)
                resp = await client.post("/v1/leads", json=sales_ready_lead(),
                                         headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex})
                assert resp.status_code == 202, resp.text
                lead_id = resp.json()["lead_id"]
                await wait_for_span(spans, lambda s: s.name == "process lead-routed"
                                    and s.attributes.get("messaging.consumer.group.name") == groups["sla-watcher"]
                                    and s.attributes.get("leadbridge.lead_id") == lead_id)
        finished = spans.get_finished_spans()

    request = next(s for s in finished if s.kind == SpanKind.SERVER and s.name == "POST /v1/leads")
    trace_id = request.context.trace_id
    lead_trace = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in lead_trace}

    def chain(span) -> list[str]:
        """The span's ancestors up to the trace's root, the span first."""
        names = []
        while span is not None:
            names.append(span.name)
            span = by_id.get(span.parent.span_id) if span.parent else None
        return names

    watcher_span = next(s for s in lead_trace if s.name == "process lead-routed"
                        and s.attributes["messaging.consumer.group.name"] == groups["sla-watcher"])
    assert chain(watcher_span) == [
        "process lead-routed", "send lead-routed",      # sla-watcher's handler <- router's outbox relay
        "process lead-scored", "send lead-scored",      # router's handler <- scoring's relay
        "process lead-captured", "send lead-captured",  # scoring's handler <- intake's relay
        "POST /v1/leads",                               # intake's request, the root
    ]
    assert request.parent is None, "the request is the trace's root"
    handlers = {s.attributes["messaging.consumer.group.name"] for s in lead_trace if s.kind == SpanKind.CONSUMER}
    assert set(groups.values()) <= handlers
    assert {s.attributes["leadbridge.outbox.schema"] for s in lead_trace if s.kind == SpanKind.PRODUCER} >= {
        "intake", "scoring", "router"}
    assert {s.attributes["leadbridge.lead_id"] for s in lead_trace if s.kind != SpanKind.SERVER} == {lead_id}
    assert "X-API-Key" not in str(request.attributes) and key not in str(list(lead_trace))

    # the trace id is in the JSON log lines of the lead's handling (sla-watcher: "deadlines started")
    lines = [line for line in json_logs() if line.get("lead_id") == lead_id]
    started = [line for line in lines if line["message"] == "deadlines started"]
    assert started and started[0]["trace_id"] == format(trace_id, "032x"), lines
    assert started[0]["span_id"] == format(watcher_span.context.span_id, "016x")
