"""The AsyncAPI document says, per service, what it sends and receives: exactly what its handlers.py declares."""

from __future__ import annotations

from collections import defaultdict

import pytest
from leadbridge_contracts.events import LeadCaptured, LeadScored
from leadbridge_contracts.topics import topic_for
from leadbridge_events import schema_export
from leadbridge_events.registry import EventHandlers, on

SERVICES = {"crm-sync", "insights", "intake", "router", "scoring", "sla-watcher"}


def _declared(doc: dict) -> dict[tuple[str, str], set[str]]:
    """(service, action) -> {"topic:MessageName", ...} as the document's operations say."""
    said: dict[tuple[str, str], set[str]] = defaultdict(set)
    for op in doc["operations"].values():
        [tag] = op["tags"]
        topic = op["channel"]["$ref"].removeprefix("#/channels/")
        for ref in op["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{topic}/messages/")
            name = ref["$ref"].rpartition("/")[2]
            assert name in doc["channels"][topic]["messages"], f"{name} is not a message of channel {topic}"
            said[(tag["name"], op["action"])].add(f"{topic}:{name}")
    return said


def _expected(table: EventHandlers) -> dict[str, set[str]]:
    return {"receive": {f"{topic_for(m.event_type).name}:{m.__name__}" for m in table.consumes},
            "send": {f"{topic_for(m.event_type).name}:{m.__name__}" for m in table.emits}}


def test_every_service_registers_its_table_through_the_entry_point_group():
    assert set(schema_export.service_declarations()) == SERVICES


def test_operations_per_service_match_each_services_handlers_table():
    tables = schema_export.service_declarations()
    said = _declared(schema_export.asyncapi())
    for service, table in tables.items():
        expected = _expected(table)
        for action in ("receive", "send"):
            assert said.get((service, action), set()) == expected[action], (service, action)
    assert {s for s, _ in said} <= SERVICES


def test_the_document_answers_what_scoring_consumes_and_emits():
    ops = schema_export.asyncapi()["operations"]
    scoring = {k: v for k, v in ops.items() if v["tags"] == [{"name": "scoring"}]}
    assert set(scoring) == {"scoring-receives-lead-captured", "scoring-receives-follow-up-logged",
                            "scoring-sends-lead-scored"}
    assert scoring["scoring-sends-lead-scored"]["action"] == "send"
    assert [m["$ref"] for m in scoring["scoring-receives-lead-captured"]["messages"]] == [
        "#/channels/lead-captured/messages/LeadCaptured", "#/channels/lead-captured/messages/LeadActivityRecorded"]
    senders = {v["tags"][0]["name"] for v in ops.values() if v["action"] == "send"
               and v["channel"]["$ref"] == "#/channels/follow-up-logged"}
    assert senders == {"intake", "crm-sync"}  # both emit follow-ups from HTTP: their tables declare it


def test_operations_follow_the_tables_given():
    table = EventHandlers(on(LeadCaptured, _nothing), emits=(LeadScored,))
    ops = schema_export.operations({"toy": table})
    assert {k: (v["action"], v["channel"]["$ref"]) for k, v in ops.items()} == {
        "toy-receives-lead-captured": ("receive", "#/channels/lead-captured"),
        "toy-sends-lead-scored": ("send", "#/channels/lead-scored"),
    }


def test_entry_points_that_are_not_tables_are_refused(monkeypatch):
    class Fake:
        name = "broken"

        def load(self):
            return {"lead-captured": _nothing}  # the old topic -> handler map

    monkeypatch.setattr(schema_export, "entry_points", lambda group: [Fake()])
    with pytest.raises(TypeError, match="not EventHandlers"):
        schema_export.service_declarations()


async def _nothing(event, ctx) -> None:
    return None
