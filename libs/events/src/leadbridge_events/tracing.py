"""One trace per lead: OpenTelemetry spans for HTTP requests, outbox relay sends and event handlers.

The W3C ``traceparent`` travels with the event, through the outbox:

1. an event staged in the outbox (``outbox_headers``) stores the traceparent of the span it was staged in
   (the HTTP request, or the handler of the event that caused it) in the row's ``headers``;
2. the relay sends each row in a ``send <topic>`` span, a child of that traceparent, and puts the send
   span's traceparent in the Kafka record's headers (``publish_spans``);
3. the consumer runs the handler in a ``process <topic>`` span, a child of the record's traceparent
   (``handling``; ``batch_spans`` on the batch path, one span per record), so that what the handler
   emits carries the same trace on.

Off by default, and then nearly free (no span is made, no header written). On when the standard variables
say so (``configure_tracing``, called by ``logs.configure_logging`` at a service's start):
``OTEL_TRACES_EXPORTER`` = ``otlp`` (OTLP over HTTP/protobuf) or ``console``, or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true``
turns it off again. The SDK reads the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_HEADERS``...). See docs/observability.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger("leadbridge.tracing")

TRACE_HEADERS = ("traceparent", "tracestate")
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
# batch path: the span of each event being handled (by event id), for the events they cause
_NO_SPANS: Mapping[str, Span] = types.MappingProxyType({})
_spans_by_event: contextvars.ContextVar[Mapping[str, Span]] = contextvars.ContextVar("leadbridge_spans",
                                                                                     default=_NO_SPANS)


class TracingConfigError(ValueError):
    """The OTEL_* settings ask for something this build cannot do (an unknown exporter, OTLP over gRPC)."""


def enabled() -> bool:
    return _tracer is not None


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only 'http/protobuf' is "
                                         "supported (send to the collector's OTLP/HTTP port, 4318)")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # headers, timeout, certificate: the SDK reads the other OTEL_EXPORTER_OTLP_* variables
            exporters.append(OTLPSpanExporter(endpoint=_otlp_endpoint(env)))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r}: use 'otlp', 'console' or 'none'")
    return exporters


def _otlp_endpoint(env: Mapping[str, str]) -> str:
    """Where spans go (OTLP/HTTP): ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``, else a collector on this host; an empty value (a
    deployment's placeholder) counts as unset."""
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    return (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318").rstrip("/") + "/v1/traces"


def configure_tracing(service: str, *, exporter: SpanExporter | None = None,
                      env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if the ``OTEL_*`` variables (or ``exporter``, for tests: spans exported as they end)
    ask for it; returns whether it is on. Raises ``TracingConfigError`` on settings it cannot honour."""
    global _tracer, _provider
    env = os.environ if env is None else env
    processors: list[Any] = [SimpleSpanProcessor(exporter)] if exporter is not None else [
        BatchSpanProcessor(e) for e in _exporters(env)]
    if not processors:
        return enabled()
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))  # + OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    for processor in processors:
        provider.add_span_processor(processor)
    if _provider is not None:
        _provider.shutdown()
    # NOT the global provider: FastAPI's own telemetry would then trace every request a second time, query
    # strings (API keys) included. Our spans and the FastAPI instrumentation use this provider explicitly.
    _provider = provider
    _tracer = provider.get_tracer("leadbridge")
    log.info("tracing on", extra={"exporters": [type(p).__name__ for p in processors]})
    return True


def tracer() -> trace.Tracer:
    """The tracer of LeadBridge's spans (a no-op one while tracing is off)."""
    return _tracer or trace.NoOpTracer()


def shutdown() -> None:
    """Flush and stop (tests; a service's exit flushes by itself)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


# -- HTTP ---------------------------------------------------------------------------------------------


def _without_query(span: Span, scope: dict[str, Any]) -> None:
    """Query strings can carry secrets (``?api_key=``): spans get the path only."""
    if not span.is_recording():
        return
    path = scope.get("path", "")
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full"):
        if key in attributes:
            span.set_attribute(key, str(attributes[key]).split("?", 1)[0])
    for key in ("http.target",):
        if key in attributes:
            span.set_attribute(key, path)
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


def instrument_app(app: Any) -> None:
    """A span for each HTTP request of ``app`` (FastAPI), when tracing is on."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, server_request_hook=_without_query,
                                       excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"])


# -- through the outbox -----------------------------------------------------------------------------


def _inject(span: Span | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span) if span is not None else None)
    return carrier


def outbox_headers(event: Any) -> dict[str, str]:
    """The outbox row's ``headers`` for ``event``: its CloudEvents headers, plus the traceparent of its span:
    the one ``staged_as`` gave it, else (batch path) the span of the event that caused it, else the current one."""
    headers: dict[str, str] = event.ce_headers()
    if _tracer is None:
        return headers
    spans = _spans_by_event.get()
    span = spans.get(event.id) or (spans.get(event.causation_id) if event.causation_id else None)
    headers.update(_inject(span))
    return headers


def current_context() -> dict[str, str]:
    """The current span's traceparent (empty when tracing is off), to stage an event with later."""
    return _inject() if _tracer is not None else {}


@contextlib.contextmanager
def staged_as(captured: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Events staged in the block carry the span captured for them (event id -> ``current_context()``), e.g.
    by the request whose event another task writes (intake's group commit)."""
    if _tracer is None or not captured:
        yield
        return
    spans = {eid: trace.get_current_span(_parent(c)) for eid, c in captured.items() if c}
    token = _spans_by_event.set({**_spans_by_event.get(), **spans})
    try:
        yield
    finally:
        _spans_by_event.reset(token)


@contextlib.contextmanager
def resumed(captured: Mapping[str, str]) -> Iterator[None]:
    """Continue, in another task, the span whose ``current_context`` was captured."""
    if _tracer is None or not captured:
        yield
        return
    token = otel_context.attach(_parent(captured))
    try:
        yield
    finally:
        otel_context.detach(token)


def _parent(headers: Any) -> otel_context.Context:
    carrier: dict[str, str] = {}
    for key, value in headers.items() if isinstance(headers, Mapping) else (headers or ()):
        if key in TRACE_HEADERS:
            carrier[key] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return propagate.extract(carrier)


def _end(spans: Iterable[Span], exc: BaseException | None) -> None:
    for span in spans:
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()


@contextlib.contextmanager
def publish_spans(rows: Sequence[Any], schema: str) -> Iterator[Any]:
    """A ``send <topic>`` span per outbox row (child of the row's traceparent) while the rows are sent;
    yields ``headers(row)``: the Kafka headers to send the row with (the send span's traceparent in)."""
    if _tracer is None:
        yield lambda r: [(k, v.encode()) for k, v in r.headers.items()]
        return
    spans = {r.id: _tracer.start_span(
        f"send {r.topic}", context=_parent(r.headers), kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                    "messaging.destination.name": r.topic, "messaging.kafka.message.key": r.key,
                    "messaging.message.id": r.headers.get("ce_id", ""), "leadbridge.lead_id": r.key,
                    "leadbridge.outbox.schema": schema, "leadbridge.outbox.id": r.id}) for r in rows}

    def headers(row: Any) -> list[tuple[str, bytes]]:
        merged = {k: v for k, v in row.headers.items() if k not in TRACE_HEADERS} | _inject(spans[row.id])
        return [(k, v.encode()) for k, v in merged.items()]

    try:
        yield headers
    except BaseException as exc:
        _end(spans.values(), exc)
        raise
    _end(spans.values(), None)


def _process_span(record: Any, event: Any, group: str) -> Span:
    assert _tracer is not None
    return _tracer.start_span(
        f"process {record.topic}", context=_parent(record.headers), kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic, "messaging.consumer.group.name": group,
                    "messaging.destination.partition.id": str(record.partition), "messaging.kafka.offset": record.offset,
                    "messaging.message.id": event.id, "leadbridge.lead_id": event.lead_id,
                    "leadbridge.event_type": event.type})


_OFF: contextlib.AbstractContextManager[None] = contextlib.nullcontext()  # what the span helpers are when off


def handling(record: Any, event: Any, group: str) -> contextlib.AbstractContextManager[None]:
    """Run one event's handler in a ``process <topic>`` span, a child of the record's traceparent."""
    return _OFF if _tracer is None else _handling(record, event, group)


@contextlib.contextmanager
def _handling(record: Any, event: Any, group: str) -> Iterator[None]:
    span = _process_span(record, event, group)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield


def span_of(event: Any) -> contextlib.AbstractContextManager[Any]:
    """Inside ``batch_spans``: make ``event``'s span the current one (its handler's logs and emits carry it)."""
    if _tracer is None:
        return _OFF
    span = _spans_by_event.get().get(event.id)
    return trace.use_span(span, end_on_exit=False) if span is not None else contextlib.nullcontext()


def batch_spans(records: list[Any], events: list[Any], group: str) -> contextlib.AbstractContextManager[None]:
    """For a batch handled in one transaction: a ``process`` span per record, ended with the batch; an
    event staged meanwhile carries the span of the event that caused it (``causation_id``)."""
    return _OFF if _tracer is None else _batch_spans(records, events, group)


@contextlib.contextmanager
def _batch_spans(records: list[Any], events: list[Any], group: str) -> Iterator[None]:
    assert _tracer is not None
    spans = {e.id: _process_span(r, e, group) for r, e in zip(records, events, strict=False)}
    for span in spans.values():
        span.set_attribute("messaging.batch.message_count", len(records))
    token = _spans_by_event.set(spans)
    try:
        yield
    except BaseException as exc:
        _end(spans.values(), exc)
        raise
    else:
        _end(spans.values(), None)
    finally:
        _spans_by_event.reset(token)


# -- logs -------------------------------------------------------------------------------------------


class TraceIdsInLogs(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, as trace back ends show them) to a log record made inside a span,
    or (batch handlers) logged with the ``event_id`` of an event whose span the batch holds."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid and isinstance(event_id := getattr(record, "event_id", None), str):
            span = _spans_by_event.get().get(event_id)
            ctx = span.get_span_context() if span is not None else ctx
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True
