"""One JSON Schema per event model (draft 2020-12), and the CloudEvents headers' schema: the published contracts.

``leadbridge_events.schema_export`` (``make schemas``) writes them under ``libs/contracts/schemas/`` with the
AsyncAPI document; this module needs only the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .envelope import SOURCE_PREFIX, SPEC_VERSION, TYPE_PREFIX
from .events import EVENT_MODELS, EventData

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_name(model: type[EventData]) -> str:
    return f"{model.event_type}.v{model.schema_version}"


def json_schema(model: type[EventData]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:leadbridge:schema:{model.event_type}:v{model.schema_version}",
        "x-cloudevents-type": TYPE_PREFIX + model.event_type,
        "x-schema-version": model.schema_version,
        **schema,
    }


def headers_schema() -> dict[str, Any]:
    def s(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "description": description, **extra}

    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "ce_leadid",
                     "ce_schemaversion", "content-type"],
        "properties": {
            "ce_specversion": s("CloudEvents spec version", const=SPEC_VERSION),
            "ce_id": s("Unique event id; consumers dedupe on it"),
            "ce_type": s(f"{TYPE_PREFIX}<event-type>"),
            "ce_source": s(f"{SOURCE_PREFIX}<service>"),
            "ce_time": s("When the event occurred (RFC 3339, UTC)", format="date-time"),
            "ce_subject": s("The lead id"),
            "ce_dataschema": s("urn:leadbridge:schema:<event-type>:v<version>"),
            "ce_leadid": s("The lead id (also the record key)"),
            "ce_schemaversion": s("Data schema version"),
            "ce_correlationid": s("Id shared by all events of one flow"),
            "ce_causationid": s("Id of the event that caused this one"),
            "content-type": s("Always application/json", const="application/json"),
        },
    }


def render_json_schemas() -> dict[str, str]:
    """File name -> content of each event's JSON Schema."""
    return {f"{schema_name(m)}.json": json.dumps(json_schema(m), indent=2, sort_keys=True) + "\n"
            for m in EVENT_MODELS.values()}
