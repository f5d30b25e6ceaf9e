"""Generate the published contracts from the models: one JSON Schema per event, and an AsyncAPI document.

``leadbridge-schemas`` (``make schemas``) writes them under ``libs/events/schemas/``; ``--check`` exits 1
when the checked-in files differ from what the models generate (a test runs that check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .contracts import EVENT_MODELS, EventData
from .envelope import SOURCE_PREFIX, SPEC_VERSION, TYPE_PREFIX
from .topics import ALL_TOPICS, DLQ_SUFFIX

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
EMITTERS = {
    "lead-captured": "intake", "lead-activity-recorded": "intake", "follow-up-logged": "intake and crm-sync",
    "lead-scored": "scoring", "lead-routed": "router", "sla-at-risk": "sla-watcher", "sla-breached": "sla-watcher",
    "sla-deadlines-set": "sla-watcher", "sla-deadline-met": "sla-watcher", "crm-delivery-recorded": "crm-sync",
    "roster-changed": "router",
}


def _schema_name(model: type[EventData]) -> str:
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


def _headers_schema() -> dict[str, Any]:
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


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        refs = {}
        for event_type in topic.event_types:
            model = EVENT_MODELS[(event_type, 1)]
            name = model.__name__
            messages[name] = {
                "name": event_type,
                "title": name,
                "summary": (model.__doc__ or "").strip(),
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
                "payload": {"$ref": f"./{_schema_name(model)}.json"},
                "bindings": {"kafka": {"key": {"type": "string", "description": "lead id"}}},
            }
            refs[name] = {"$ref": f"#/components/messages/{name}"}
        channels[topic.name] = {
            "address": topic.name,
            "description": f"{topic.description} Partitions: {topic.partitions}; key: lead id. "
                           f"Dead letters: {topic.name}{DLQ_SUFFIX}.",
            "messages": refs,
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions}},
        }
        emitter = EMITTERS[topic.event_types[0]]
        operations[f"publish-{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "summary": f"Published by {emitter}",
        }
        operations[f"consume-{topic.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "summary": "Any consumer group; ignore unknown fields and headers, dedupe on ce_id",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "LeadBridge events",
            "version": "1.0.0",
            "description": "Lead lifecycle events over Apache Kafka, CloudEvents 1.0 Kafka protocol binding, "
                           "binary content mode: CloudEvents attributes in ce_* headers, JSON data in the value, "
                           "the lead id as the record key.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": _headers_schema()}},
    }


def render() -> dict[str, str]:
    """File name -> content of every generated file."""
    files = {
        f"{_schema_name(m)}.json": json.dumps(json_schema(m), indent=2, sort_keys=True) + "\n"
        for m in EVENT_MODELS.values()
    }
    files["asyncapi.yaml"] = "# Generated by `make schemas` from libs/events contracts. Do not edit.\n" + yaml.safe_dump(
        asyncapi(), sort_keys=False, width=110
    )
    return files


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    wanted = render()
    stale = [n for n, c in wanted.items() if not (directory / n).exists() or (directory / n).read_text() != c]
    extra = [p.name for p in directory.glob("*") if p.name not in wanted] if directory.exists() else []
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadbridge-schemas")
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale contract files (run `make schemas`): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for old in SCHEMA_DIR.glob("*"):
        old.unlink()
    for name, content in render().items():
        (SCHEMA_DIR / name).write_text(content)
    print(f"wrote {len(render())} files to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
