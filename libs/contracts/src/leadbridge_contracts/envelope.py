"""The event envelope, and its CloudEvents 1.0 Kafka protocol binding (binary content mode).

On the wire an event is one Kafka record:

- key: the lead id (UTF-8), so every event of one lead lands on one partition, in order;
- value: the event's data as JSON (``content-type: application/json``);
- headers: the CloudEvents attributes, each prefixed ``ce_``: ``ce_specversion`` (1.0), ``ce_id``,
  ``ce_type`` (``io.leadbridge.<event-type>``), ``ce_source`` (``/leadbridge/<service>``), ``ce_time``
  (RFC 3339), ``ce_subject`` (the lead id), ``ce_dataschema``, plus the LeadBridge extensions
  ``ce_leadid``, ``ce_schemaversion``, ``ce_correlationid`` and ``ce_causationid``.

Consumers ignore headers and data fields they do not know.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .events import EventData, event_model

TYPE_PREFIX = "io.leadbridge."
SOURCE_PREFIX = "/leadbridge/"
SPEC_VERSION = "1.0"

D = TypeVar("D", bound=EventData)


class UndecodableEvent(ValueError):
    """A record that is not a valid LeadBridge event: the reason says why. Goes to the DLQ."""


def _errors(exc: ValidationError) -> str:
    """Which fields failed and why, without the input values (a dead letter's reason carries no personal data)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False, include_context=False))


def new_event_id() -> str:
    """A random (version 4) UUID as text: ``str(uuid.uuid4())`` without building a ``UUID`` (2.4 -> 1.0 us)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


_ENVELOPES: dict[type[EventData], type[Envelope[Any]]] = {}


def _parametrized(model: type[EventData]) -> type[Envelope[Any]]:
    """``Envelope[model]`` for a data class known at run time, so pydantic validates and dumps ``data`` as it.

    Looked up once per class: pydantic's own ``Envelope[model]`` finds its cached class only after computing a
    cache key, which costs more than validating an envelope's attributes."""
    try:
        return _ENVELOPES[model]
    except KeyError:
        cls = _ENVELOPES[model] = Envelope[model]  # type: ignore[valid-type]  # a runtime parametrization
        return cls


def _rfc3339(time: datetime) -> str:
    """``ce_time``: RFC 3339 in UTC with a ``Z``."""
    return (time if time.tzinfo is UTC else time.astimezone(UTC)).isoformat().replace("+00:00", "Z")


class Envelope(BaseModel, Generic[D]):
    """One event: its metadata (the CloudEvents attributes) and its typed data."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_event_id, description="Unique event id (ce_id); the dedupe key.")
    type: str = Field(description="Event type, e.g. 'lead-captured' (ce_type without the io.leadbridge. prefix).")
    source: str = Field(description="The service that emitted it, e.g. 'intake' (ce_source /leadbridge/intake).")
    time: datetime = Field(default_factory=_utcnow, description="When it occurred (ce_time, UTC).")
    lead_id: str = Field(description="The lead this event is about; the Kafka record key and ce_subject.")
    schema_version: int = Field(default=1, description="Version of the data schema (ce_schemaversion).")
    correlation_id: str | None = Field(default=None, description="Id shared by every event of one flow.")
    causation_id: str | None = Field(default=None, description="Id of the event that caused this one.")
    data: D

    @classmethod
    def of(
        cls,
        data: EventData,
        *,
        source: str,
        lead_id: str,
        caused_by: Envelope[Any] | None = None,
        time: datetime | None = None,
        event_id: str | None = None,
    ) -> Envelope[Any]:
        """Wrap ``data`` in an envelope; ``caused_by`` links correlation and causation ids.

        Values already of their fields' types (the usual case: text, an aware time, validated data) are not
        validated again (``_built``; 10 -> 4 us); anything else goes through pydantic, and its errors."""
        eid = event_id or new_event_id()
        correlation = (caused_by.correlation_id or caused_by.id) if caused_by else eid
        values: dict[str, Any] = {
            "id": eid,
            "type": data.event_type,
            "source": source,
            "time": time or _utcnow(),
            "lead_id": lead_id,
            "schema_version": data.schema_version,
            "correlation_id": correlation,
            "causation_id": caused_by.id if caused_by else None,
            "data": data,
        }
        cls = _parametrized(type(data))
        return _built(cls, values) if _of_their_types(values) else cls.model_validate(values)

    # -- Kafka binding ---------------------------------------------------------------------------

    def kafka_key(self) -> bytes:
        return self.lead_id.encode()

    def kafka_value(self) -> bytes:
        data = self.data  # == data.model_dump_json().encode(), without the round trip through str
        return data.__pydantic_serializer__.to_json(data)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self.ce_headers().items()]

    def ce_headers(self) -> dict[str, str]:
        """The record's headers as text (``kafka_headers`` encodes them; an outbox row stores them so)."""
        headers = {
            "ce_specversion": SPEC_VERSION,
            "ce_id": self.id,
            "ce_type": TYPE_PREFIX + self.type,
            "ce_source": SOURCE_PREFIX + self.source,
            "ce_time": _rfc3339(self.time),
            "ce_subject": self.lead_id,
            "ce_dataschema": f"urn:leadbridge:schema:{self.type}:v{self.schema_version}",
            "ce_leadid": self.lead_id,
            "ce_schemaversion": str(self.schema_version),
            "content-type": "application/json",
        }
        if self.correlation_id:
            headers["ce_correlationid"] = self.correlation_id
        if self.causation_id:
            headers["ce_causationid"] = self.causation_id
        return headers

    @staticmethod
    def from_kafka(key: bytes | None, value: bytes | None, headers: Any) -> Envelope[Any]:
        """Decode and validate one record; raises UndecodableEvent with the reason."""
        try:
            try:
                attrs = {k: v.decode() for k, v in headers}  # what a Kafka record has: bytes
            except (AttributeError, TypeError):  # a str or None value (tests, other clients); no headers
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (headers or ())}
        except UnicodeDecodeError as exc:
            raise UndecodableEvent(f"header is not UTF-8: {exc}") from exc
        missing = [h for h in ("ce_id", "ce_type", "ce_source", "ce_time") if h not in attrs]
        if missing:
            raise UndecodableEvent(f"missing CloudEvents header(s): {', '.join(missing)}")
        if attrs.get("ce_specversion", SPEC_VERSION) != SPEC_VERSION:
            raise UndecodableEvent(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
        ce_type = attrs["ce_type"]
        if not ce_type.startswith(TYPE_PREFIX):
            raise UndecodableEvent(f"unknown ce_type {ce_type!r}")
        event_type = ce_type[len(TYPE_PREFIX):]
        try:
            version = int(attrs.get("ce_schemaversion", "1"))
        except ValueError as exc:
            raise UndecodableEvent(f"bad ce_schemaversion {attrs.get('ce_schemaversion')!r}") from exc
        model = event_model(event_type, version)
        if model is None:
            raise UndecodableEvent(f"unknown event type {event_type!r} version {version}")
        if value is None:
            raise UndecodableEvent("record has no value")
        try:
            data = model.model_validate_json(value)
        except ValidationError as exc:
            raise UndecodableEvent(f"{event_type} v{version} failed schema validation: {_errors(exc)}") from exc
        lead_id = attrs.get("ce_leadid") or attrs.get("ce_subject") or (key.decode() if key else None)
        if not lead_id:
            raise UndecodableEvent("no lead id (ce_leadid, ce_subject or record key)")
        cls = _parametrized(model)
        values = {
            "id": attrs["ce_id"],
            "type": event_type,
            "source": attrs["ce_source"].removeprefix(SOURCE_PREFIX),
            "time": attrs["ce_time"],  # RFC 3339 text
            "lead_id": lead_id,
            "schema_version": version,
            "correlation_id": attrs.get("ce_correlationid"),
            "causation_id": attrs.get("ce_causationid"),
            "data": data,
        }
        if (time := _rfc3339_time(values["time"])) is not None:
            values["time"] = time  # every other attribute is text already: nothing left for pydantic to check
            return _built(cls, values)
        try:  # anything but plain RFC 3339 with an offset: pydantic's parsing, and its reasons
            envelope = cls.model_validate(values)
        except ValidationError as exc:
            raise UndecodableEvent(f"bad envelope attributes: {_errors(exc)}") from exc
        if envelope.time.utcoffset() is None:  # a naive time would fail later, comparing with aware ones
            raise UndecodableEvent("ce_time has no UTC offset (RFC 3339 requires one)")
        return envelope


def _rfc3339_time(text: str) -> datetime | None:
    """``text`` as an aware datetime when it is RFC 3339 (``...T...Z`` or ``...T...+hh:mm``); None otherwise."""
    if text[10:11] != "T" or not (text.endswith("Z") or text[-6:-5] in ("+", "-")):
        return None
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        return None
    return time if time.utcoffset() is not None else None


_FIELDS = frozenset(Envelope.model_fields)


_TEXT = ("id", "type", "source", "lead_id", "correlation_id")


def _of_their_types(values: dict[str, Any]) -> bool:
    """Whether ``Envelope.of``'s values are of their fields' types already (then ``_built`` builds it)."""
    return (all(type(values[k]) is str for k in _TEXT) and isinstance(values["time"], datetime)
            and type(values["schema_version"]) is int and isinstance(values["data"], EventData)
            and (values["causation_id"] is None or type(values["causation_id"]) is str))


def _built(cls: type[Envelope[Any]], values: dict[str, Any]) -> Envelope[Any]:
    """An envelope of values already of their fields' types, as ``model_validate`` would build it (every field
    set; no validators, no private attributes): ``model_construct`` without its per-field defaults pass, which
    costs more than validating. ``from_kafka`` checked each value; ``test_contracts`` compares the two."""
    envelope = cls.__new__(cls)
    object.__setattr__(envelope, "__dict__", values)
    object.__setattr__(envelope, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(envelope, "__pydantic_extra__", None)
    object.__setattr__(envelope, "__pydantic_private__", None)
    return envelope
