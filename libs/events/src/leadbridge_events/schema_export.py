"""Generate the published contracts: one JSON Schema per event, and an AsyncAPI 3 document.

The AsyncAPI document's channels and messages come from the models and the topic registry; its operations
come from the services' own declarations: each service's ``EventHandlers`` table (``registry``), found
through the ``leadbridge.handlers`` entry point group (``scoring = "leadbridge_scoring.handlers:HANDLERS"``
in each service's pyproject.toml), so this library imports no service by name. Per service, one
``receive`` operation per topic it consumes and one ``send`` operation per topic it emits to, each listing
the event types (messages) concerned and tagged with the service's name.

``leadbridge-schemas`` (``make schemas``) writes them under ``libs/contracts/schemas/``; ``--check`` exits 1
when the checked-in files differ from what the models and declarations generate (a test runs that check).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from leadbridge_contracts.events import EVENT_MODELS, EventData
from leadbridge_contracts.json_schema import SCHEMA_DIR, headers_schema, render_json_schemas, schema_name
from leadbridge_contracts.topics import ALL_TOPICS, DLQ_SUFFIX, topic_for

from .registry import EventHandlers

ENTRY_POINT_GROUP = "leadbridge.handlers"


def service_declarations() -> dict[str, EventHandlers]:
    """Every installed service's table, by service name (the entry point's name), sorted by name."""
    found = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if not found:
        raise RuntimeError(f"no service declares its handlers (entry point group {ENTRY_POINT_GROUP!r}): "
                           "install the services (make install)")
    bad = [name for name, table in found.items() if not isinstance(table, EventHandlers)]
    if bad:
        raise TypeError(f"entry points of {ENTRY_POINT_GROUP!r} that are not EventHandlers: {bad}")
    return dict(sorted(found.items()))


def _by_topic(models: Iterable[type[EventData]]) -> dict[str, list[str]]:
    """Topic name -> the message names (model class names) of ``models`` it carries, in the topic's order."""
    wanted = {m.event_type for m in models}
    out: dict[str, list[str]] = {}
    for topic in ALL_TOPICS:
        names = [EVENT_MODELS[(t, 1)].__name__ for t in topic.event_types if t in wanted]
        if names:
            out[topic.name] = names
    for t in wanted:
        topic_for(t)  # a type no topic carries is refused already by EventHandlers
    return out


def operations(services: Mapping[str, EventHandlers]) -> dict[str, Any]:
    """AsyncAPI 3 operations: per service, what it receives (per topic) and what it sends (per topic)."""
    ops: dict[str, Any] = {}
    for service, table in services.items():
        for action, verb, models in (("receive", "receives", table.consumes), ("send", "sends", table.emits)):
            for topic, names in _by_topic(models).items():
                ops[f"{service}-{verb}-{topic}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{topic}"},
                    "summary": f"{service} {verb} {', '.join(names)}" + (
                        " (consumer group: ignores unknown fields and event types, dedupes on ce_id)"
                        if action == "receive" else " (through its transactional outbox)"),
                    "tags": [{"name": service}],
                    "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in names],
                }
    return ops


def _service_summary(table: EventHandlers) -> str:
    names = [m.event_type for m in table.consumes], [m.event_type for m in table.emits]
    return f"Receives {', '.join(names[0]) or 'nothing'}; sends {', '.join(names[1]) or 'nothing'}."


def asyncapi(services: Mapping[str, EventHandlers] | None = None) -> dict[str, Any]:
    """The AsyncAPI document; ``services``: the declarations (default: the installed services')."""
    services = service_declarations() if services is None else services
    channels: dict[str, Any] = {}
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
                "payload": {"$ref": f"./{schema_name(model)}.json"},
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
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "LeadBridge events",
            "version": "1.0.0",
            "description": "Lead lifecycle events over Apache Kafka, CloudEvents 1.0 Kafka protocol binding, "
                           "binary content mode: CloudEvents attributes in ce_* headers, JSON data in the value, "
                           "the lead id as the record key.",
            "tags": [{"name": service, "description": _service_summary(table)} for service, table in services.items()],
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations(services),
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": headers_schema()}},
    }


def render() -> dict[str, str]:
    """File name -> content of every generated file."""
    files = render_json_schemas()
    files["asyncapi.yaml"] = "# Generated by `make schemas` from libs/contracts models and the services' handlers.py. Do not edit.\n" + yaml.safe_dump(
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
