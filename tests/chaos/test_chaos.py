"""The short form of `make chaos`: a few hundred leads through every fault once, and nothing lost.

It runs on a system of its own (broker, durable PostgreSQL and the five services on free ports), crashes
scoring, router, sla-watcher, insights and intake in turn (`kill -9`, restarted), then the Kafka broker and
PostgreSQL (`pg_ctl stop -m immediate`), and puts a poison record on every input topic; then it audits every
lead intake accepted. See docs/chaos.md.
"""

from __future__ import annotations

import pytest
from leadbridge_devstack.chaos.cli import parse_args, run
from leadbridge_devstack.chaos.faults import input_topics

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_every_accepted_lead_reaches_its_final_state_through_every_fault(tmp_path):
    findings, load = run(parse_args(["--leads", "60", "--rate", "3", "--down", "1", "--gap", "0.5", "--settle", "5",
                                     "--warmup", "2", "--json", str(tmp_path / "chaos.json")]))

    assert load.posted >= 60 and not load.rejected, load.rejected[:3]
    assert [f.label for f in findings.faults if f.error] == [], "every crashed part came back"
    assert findings.lost == 0, (findings.lost_why, findings.examples[:10])
    assert findings.duplicate_routes == 0
    assert findings.unexpected_dead_letters == 0, (findings.dead_letters, findings.examples[:10])
    assert findings.stuck == 0, (findings.stuck_why, findings.examples[:10])
    assert findings.final == findings.accepted == len(load.accepted) > 0
    # every consumer group dead-lettered the poison of every topic it reads (insights reads them all)
    assert findings.poison_dead_letters >= len(input_topics())
