"""Unit tests of the event contracts and their CloudEvents Kafka binding (no broker needed)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from leadbridge_contracts.envelope import Envelope, UndecodableEvent
from leadbridge_contracts.events import EVENT_MODELS, LeadCaptured
from leadbridge_contracts.topics import ALL_TOPICS, topic_for
from leadbridge_events import schema_export

from .samples import samples


def test_every_event_type_has_a_sample_and_a_topic():
    assert {s.event_type for s in samples("l")} == {t for t, _ in EVENT_MODELS}
    for event_type, _ in EVENT_MODELS:
        assert event_type in topic_for(event_type).event_types


@pytest.mark.parametrize("data", samples("lead-1"), ids=lambda d: d.event_type)
def test_round_trip_through_the_kafka_binding(data):
    event = Envelope.of(data, source="test", lead_id="lead-1")
    headers = dict(event.kafka_headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == f"io.leadbridge.{data.event_type}".encode()
    assert event.kafka_key() == b"lead-1"
    decoded = Envelope.from_kafka(event.kafka_key(), event.kafka_value(), event.kafka_headers())
    assert decoded == event
    assert type(decoded.data) is type(data)


@pytest.mark.parametrize("data", samples("lead-1"), ids=lambda d: d.event_type)
def test_values_validate_against_the_published_json_schema(data):
    schema = json.loads((schema_export.SCHEMA_DIR / f"{data.event_type}.v1.json").read_text())
    jsonschema.validate(json.loads(Envelope.of(data, source="t", lead_id="x").kafka_value()), schema)


@pytest.mark.parametrize("data", samples("lead-1"), ids=lambda d: d.event_type)
@pytest.mark.parametrize("ce_time", ["2026-12-01T17:00:00.123456Z", "2026-12-01T18:00:00+01:00",
                                     "2026-12-01T17:00:00Z", "2026-12-01 17:00:00Z", "2026-12-01T17:00Z"])
def test_a_decoded_envelope_is_the_one_pydantic_validates(data, ce_time):
    """``from_kafka`` builds the envelope from checked values without pydantic when ce_time is RFC 3339: the
    same object as validating the same attributes (the other spellings take pydantic's path)."""
    event = Envelope.of(data, source="test", lead_id="lead-1",
                        caused_by=Envelope.of(samples("lead-1")[0], source="intake", lead_id="lead-1"))
    headers = [(k, ce_time.encode() if k == "ce_time" else v) for k, v in event.kafka_headers()]
    decoded = Envelope.from_kafka(event.kafka_key(), event.kafka_value(), headers)
    validated = type(decoded).model_validate({**event.model_dump(), "time": ce_time})
    assert decoded == validated and decoded.time == validated.time and decoded.time.utcoffset() is not None
    assert decoded.model_fields_set == validated.model_fields_set
    assert decoded.model_dump() == validated.model_dump() and decoded.kafka_headers() == validated.kafka_headers()
    assert decoded.kafka_value() == event.kafka_value()
    with pytest.raises(Exception):  # noqa: B017 -- frozen, like any envelope
        decoded.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("data", samples("lead-1"), ids=lambda d: d.event_type)
def test_an_envelope_of_checked_values_is_the_one_pydantic_validates(data):
    """``Envelope.of`` skips validation for values already of their fields' types: the same object as
    validating them; a value of another type still takes pydantic's path (and its errors)."""
    cause = Envelope.of(samples("lead-1")[0], source="intake", lead_id="lead-1")
    event = Envelope.of(data, source="test", lead_id="lead-1", caused_by=cause)
    validated = type(event).model_validate(event.model_dump())
    assert event == validated and event.model_fields_set == validated.model_fields_set
    assert event.model_dump() == validated.model_dump() and event.kafka_headers() == validated.kafka_headers()
    assert event.kafka_value() == validated.kafka_value() and type(event.data) is type(data)
    with pytest.raises(Exception):  # noqa: B017 -- frozen, like any envelope
        event.id = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):  # pydantic's ValidationError: not text
        Envelope.of(data, source="test", lead_id=None)  # type: ignore[arg-type]


def test_consumers_ignore_unknown_fields_and_headers():
    event = Envelope.of(samples("l")[0], source="intake", lead_id="l")
    value = json.loads(event.kafka_value())
    value["added_in_a_later_minor_version"] = {"x": 1}
    headers = event.kafka_headers() + [("ce_someextension", b"x"), ("traceparent", b"00-abc")]
    decoded = Envelope.from_kafka(event.kafka_key(), json.dumps(value).encode(), headers)
    assert decoded.data == event.data


def test_causation_links_correlation_and_causation_ids():
    first = Envelope.of(samples("l")[0], source="intake", lead_id="l")
    second = Envelope.of(samples("l")[2], source="scoring", lead_id="l", caused_by=first)
    third = Envelope.of(samples("l")[3], source="router", lead_id="l", caused_by=second)
    assert second.causation_id == first.id and third.causation_id == second.id
    assert first.correlation_id == second.correlation_id == third.correlation_id == first.id


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda k, v, h: (k, b"not json", h), "failed schema validation"),
        (lambda k, v, h: (k, b'{"lead_id": "l"}', h), "failed schema validation"),
        (lambda k, v, h: (k, v, [x for x in h if x[0] != "ce_id"]), "missing CloudEvents header"),
        (lambda k, v, h: (k, v, [(n, b"io.leadbridge.nope") if n == "ce_type" else (n, x) for n, x in h]),
         "unknown event type"),
        (lambda k, v, h: (k, v, [(n, b"9") if n == "ce_schemaversion" else (n, x) for n, x in h]),
         "unknown event type"),
        (lambda k, v, h: (k, None, h), "no value"),
        (lambda k, v, h: (k, v, [(n, b"2026-12-01T17:00:00") if n == "ce_time" else (n, x) for n, x in h]),
         "ce_time has no UTC offset"),
        (lambda k, v, h: (k, v, [(n, b"yesterday") if n == "ce_time" else (n, x) for n, x in h]),
         "bad envelope attributes: time"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(mutate, reason):
    event = Envelope.of(samples("l")[0], source="intake", lead_id="l")
    key, value, headers = mutate(event.kafka_key(), event.kafka_value(), event.kafka_headers())
    with pytest.raises(UndecodableEvent, match=reason):
        Envelope.from_kafka(key, value, headers)


def test_checked_in_schemas_and_asyncapi_are_current():
    assert schema_export.stale_files() == [], "run `make schemas` and commit the result"


def test_asyncapi_lists_every_topic_and_message():
    doc = schema_export.asyncapi()
    assert set(doc["channels"]) == {t.name for t in ALL_TOPICS}
    assert set(doc["components"]["messages"]) == {m.__name__ for m in EVENT_MODELS.values()}


def test_lead_captured_requires_a_profile():
    with pytest.raises(Exception):  # noqa: B017 -- any refusal will do: pydantic's or the model's own
        LeadCaptured.model_validate({"lead_id": "l", "captured_at": "2026-01-01T00:00:00Z"})


def test_event_ids_are_random_uuids():
    import uuid

    from leadbridge_contracts.envelope import new_event_id

    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
