"""The chaos run's counting, on made-up topics: each kind of failure is counted where it belongs."""

from __future__ import annotations

from aiokafka import TopicPartition
from leadbridge_devstack.chaos.audit import audit
from leadbridge_devstack.chaos.faults import POISON_KEY, FaultWindow
from leadbridge_devstack.chaos.load import MQL, NURTURE, Accepted, ClientError, LoadResult
from leadbridge_devstack.chaos.observe import LeadViews, Rec

OFFSETS: dict[str, int] = {}


def rec(topic: str, lead: str, event_type: str | None, ts: float, event_id: str | None = None, **value) -> Rec:
    offset = OFFSETS[topic] = OFFSETS.get(topic, -1) + 1
    headers = {"ce_id": event_id or f"{event_type}-{lead}-{offset}", "ce_type": f"io.leadbridge.{event_type}"} \
        if event_type else {}
    return Rec(topic, 0, offset, lead, ts, headers, value or None)


def healthy(lead: str, kind: str, t: float) -> list[Rec]:
    out = [rec("lead-captured", lead, "lead-captured", t + 0.1),
           rec("lead-scored", lead, "lead-scored", t + 0.2, stage=kind)]
    if kind == MQL:
        out += [rec("lead-routed", lead, "lead-routed", t + 0.3, outcome="assigned", attempt=1, assignee_id="ada"),
                rec("sla-deadlines", lead, "sla-deadlines-set", t + 0.4)]
    return out


def run(records: list[Rec], kinds: dict[str, str], *, committed=None, processed=None, views=None, errors=(),
        windows=None):
    topics: dict[str, list[Rec]] = {}
    for r in records:
        topics.setdefault(r.topic, []).append(r)
    load = LoadResult(accepted={lid: Accepted(lid, kind, 0.0, 1.0) for lid, kind in kinds.items()},
                      errors=list(errors))
    if views is None:
        views = LeadViews()
        for lid, kind in kinds.items():
            views.intake[lid] = {"status": "routed" if kind == MQL else "nurture"}
            views.router[lid] = {"status": "assigned"} if kind == MQL else None
            views.insights[lid] = sorted({r.event_type for r in records if r.key == lid and r.event_type})
    windows = windows or [FaultWindow("postgres", 0.5, 2.0), FaultWindow("poison", 3.0, 3.1)]
    return audit(load, windows, topics, committed or {}, processed or {}, views)


def test_a_healthy_run_has_all_zeros():
    f = run(healthy("a", MQL, 1.0) + healthy("b", NURTURE, 1.0), {"a": MQL, "b": NURTURE})
    assert f.line() == ("chaos: accepted=2 final=2 lost=0 duplicate_routes=0 unexpected_dead_letters=0 "
                        "stuck=0") and f.ok


def test_two_routing_decisions_for_one_attempt_and_a_second_assignee_are_duplicate_routes():
    records = healthy("a", MQL, 1.0) + [
        rec("lead-routed", "a", "lead-routed", 2.0, outcome="assigned", attempt=1, assignee_id="ada"),
        rec("lead-routed", "a", "lead-routed", 2.1, outcome="assigned", attempt=2, assignee_id="bob")]
    assert run(records, {"a": MQL}).duplicate_routes == 2


def test_the_same_event_published_twice_is_not_a_duplicate_route():
    records = healthy("a", MQL, 1.0)
    records.append(rec("lead-routed", "a", "lead-routed", 2.0, event_id=records[2].event_id, outcome="assigned",
                       attempt=1, assignee_id="ada"))
    f = run(records, {"a": MQL})
    assert f.duplicate_routes == 0 and f.redelivered_records == 1 and f.ok


def test_an_event_a_group_committed_past_without_processing_is_a_lost_lead():
    records = healthy("a", MQL, 1.0)
    captured = records[0]
    f = run(records, {"a": MQL}, committed={"scoring": {TopicPartition("lead-captured", 0): captured.offset + 1}},
            processed={"scoring": {}})
    assert f.lost == 1 and f.lost_why["event skipped by scoring"] == 1


def test_a_lead_intake_forgot_is_lost_and_one_never_scored_is_stuck():
    records = healthy("a", MQL, 1.0) + healthy("b", MQL, 1.0)[:1]
    f = run(records, {"a": MQL, "b": MQL})
    f2 = run(records, {"a": MQL, "b": MQL}, views=LeadViews(intake={"b": {"status": "captured"}},
                                                         insights={"b": ["lead-captured"]}))
    assert (f.stuck, f.stuck_why["not scored"], f.final) == (1, 1, 1)
    assert f2.lost_why["unknown to intake (404)"] == 1


def test_only_the_injected_poison_may_be_dead_lettered():
    records = healthy("a", MQL, 1.0) + [
        Rec("lead-captured.dlq", 0, 0, POISON_KEY.decode(), 3.5, {"dlq_consumer_group": "scoring"}, None),
        Rec("lead-scored.dlq", 0, 0, "a", 3.6, {"dlq_consumer_group": "router", "dlq_reason": "handler_failed",
                                                 "dlq_source_topic": "lead-scored"}, None)]
    f = run(records, {"a": MQL})
    assert (f.poison_dead_letters, f.unexpected_dead_letters) == (1, 1)
    assert f.faults[-1].catch_up is not None and abs(f.faults[-1].catch_up - 0.5) < 1e-6  # poison dead-lettered at 3.5


def test_client_errors_and_catch_up_are_counted_per_fault():
    # both leads accepted at t=1, before PostgreSQL was back (t=2); the second is final only at t=2.6
    f = run(healthy("a", MQL, 1.0) + healthy("b", MQL, 2.2), {"a": MQL, "b": MQL},
            errors=[ClientError(0.7, "503"), ClientError(1.9, "503"), ClientError(3.05, "conn")])
    postgres, poison = f.faults
    assert postgres.client_errors == {"503": 2} and poison.client_errors == {"conn": 1}
    assert abs(postgres.catch_up - 0.6) < 1e-6


def test_a_client_error_after_one_broker_of_a_cluster_died_fails_the_run():
    records, kinds = healthy("a", MQL, 1.0), {"a": MQL}
    cluster_kill = [FaultWindow("kafka", 0.5, 2.0, target=" 2 of 3"), FaultWindow("poison", 3.0, 3.1)]
    calm = run(records, kinds, windows=cluster_kill, errors=[ClientError(3.05, "conn")])  # after the next fault
    assert calm.ok and calm.line().endswith("stuck=0 broker_kill_client_errors=0")
    noticed = run(records, kinds, windows=cluster_kill, errors=[ClientError(0.7, "timeout")])
    assert noticed.broker_kill_client_errors == 1 and not noticed.ok
    single = run(records, kinds, windows=[FaultWindow("kafka", 0.5, 2.0)], errors=[ClientError(0.7, "conn")])
    assert single.ok and "broker_kill" not in single.line(), "one broker down is an outage, waited out"
