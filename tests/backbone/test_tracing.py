"""Tracing through the outbox: the traceparent is stored with the outbox row, the relay's send span continues
it, the consumer's handler span continues the send span, and what the handler emits carries the trace on.
The JSON logs carry the trace id. Off by default: no traceparent, no span."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_events import tracing
from leadbridge_events.logs import configure_logging
from leadbridge_events.outbox import add_to_outbox, stage_events
from leadbridge_events.relay import OutboxRelay
from leadbridge_events.testing import recorded_spans
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from .test_consumer_runner import activity, make_runner, wait_for


def trace_id_of(traceparent: str) -> int:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(span_id) == 16 and int(flags, 16) & 1, "sampled"
    return int(trace_id, 16)


async def row_headers(backbone) -> list[dict[str, str]]:
    async with backbone.engine.connect() as conn:
        return list((await conn.execute(select(backbone.outbox.c.headers).order_by(backbone.outbox.c.id))).scalars())


@pytest.mark.integration
async def test_the_traceparent_survives_the_outbox_row(backbone):
    with recorded_spans():
        with tracing.tracer().start_as_current_span("request") as span:  # e.g. an HTTP request
            async with backbone.sessions() as session, session.begin():
                await add_to_outbox(session, backbone.outbox, activity("lead-1", 1))
                await stage_events(session, backbone.outbox, [(activity("lead-1", 2), None)])
        expected = span.get_span_context().trace_id
    async with backbone.sessions() as session, session.begin():  # tracing off: nothing added
        await add_to_outbox(session, backbone.outbox, activity("lead-1", 3))

    one, batched, untraced = await row_headers(backbone)
    assert trace_id_of(one["traceparent"]) == expected
    assert trace_id_of(batched["traceparent"]) == expected
    assert one["ce_id"] and "traceparent" not in untraced


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 50])
async def test_relay_and_handler_continue_the_trace(backbone, producer, kafka_bootstrap, topic, unique_name,
                                                    batch_size):
    async def handler(event, ctx):
        logging.getLogger("test.handler").info("handled", extra={"event_id": event.id})
        await ctx.emit(Envelope.of(event.data, source="test", lead_id=event.lead_id, caused_by=event),
                       topic=topic.name + "-out")

    with recorded_spans() as spans:
        with tracing.tracer().start_as_current_span("request") as request:
            async with backbone.sessions() as session, session.begin():
                await add_to_outbox(session, backbone.outbox, activity("lead-t", 1), topic=topic.name)
        trace_id = request.get_span_context().trace_id
        runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=batch_size)
        relay = OutboxRelay(backbone.engine, backbone.outbox, producer, keep_sent=True)  # rows read below
        tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
        try:
            async def emitted_row():
                return len(await row_headers(backbone)) == 2

            await wait_for(emitted_row)
        finally:
            runner.stop()
            for t in tasks[1:]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finished = spans.get_finished_spans()

    _, emitted = await row_headers(backbone)
    assert trace_id_of(emitted["traceparent"]) == trace_id, "the handler's emit carries the trace on"
    send = next(s for s in finished if s.name == f"send {topic.name}")
    process = next(s for s in finished if s.name == f"process {topic.name}")
    assert send.kind == SpanKind.PRODUCER and send.parent.span_id == request.get_span_context().span_id
    assert process.kind == SpanKind.CONSUMER and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == trace_id
    assert process.attributes["leadbridge.lead_id"] == "lead-t"
    assert int(emitted["traceparent"].split("-")[2], 16) == process.context.span_id


def test_json_logs_carry_the_trace_id(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("test-service", level="INFO")
        with recorded_spans():
            with tracing.tracer().start_as_current_span("work") as span:
                logging.getLogger("test").info("inside a span", extra={"lead_id": "lead-9"})
            logging.getLogger("test").info("outside")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    inside, outside = [line for line in map(json.loads, stream.getvalue().splitlines()) if line["logger"] == "test"]
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert inside["lead_id"] == "lead-9" and "trace_id" not in outside


def test_tracing_is_off_unless_the_otel_variables_turn_it_on():
    assert tracing._exporters({}) == []
    assert tracing._exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing._exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == []
    (otlp,) = tracing._exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert otlp._endpoint == "http://collector:4318/v1/traces"
    (otlp,) = tracing._exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert otlp._endpoint == "http://localhost:4318/v1/traces", "an empty placeholder is no endpoint"
    assert tracing._exporters({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}) == []
    assert type(tracing._exporters({"OTEL_TRACES_EXPORTER": "console"})[0]).__name__ == "ConsoleSpanExporter"
    with pytest.raises(tracing.TracingConfigError, match="jaeger"):
        tracing._exporters({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(tracing.TracingConfigError, match="grpc"):
        tracing._exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert not tracing.enabled()


async def test_an_http_request_gets_a_span_without_its_query_string():
    import httpx
    from fastapi import FastAPI

    with recorded_spans() as spans:
        app = FastAPI()
        tracing.instrument_app(app)

        @app.get("/v1/leads/{lead_id}")
        async def lead(lead_id: str) -> dict:
            return {"trace_id": format(trace.get_current_span().get_span_context().trace_id, "032x")}

        uninstrumented = FastAPI()  # e.g. built before tracing was on: FastAPI's own telemetry must stay off
        uninstrumented.get("/ping")(lambda: {"ok": True})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
            resp = await client.get("/v1/leads/l-1?api_key=very-secret-key")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=uninstrumented), base_url="http://x") as other:
            assert (await other.get("/ping?api_key=very-secret-key")).status_code == 200
        finished = spans.get_finished_spans()
    (span,) = finished  # one span per request: FastAPI's own telemetry stays off (no global provider)
    assert span.name == "GET /v1/leads/{lead_id}" and span.kind == SpanKind.SERVER
    assert resp.json()["trace_id"] == format(span.context.trace_id, "032x"), "the handler runs in the span"
    assert "very-secret-key" not in json.dumps(dict(span.attributes)), dict(span.attributes)
