"""Pure rules: retry schedule and Retry-After, outcome classification, token bucket, config validation,
HubSpot signature v3, Salesforce Outbound Message parsing and mapping, Standard Webhooks signing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from leadbridge_contracts.events import FollowUpOutcome, TouchType
from leadbridge_crm_sync import inbound_hubspot as hs
from leadbridge_crm_sync import inbound_salesforce as sf
from leadbridge_crm_sync.config import ConfigError, SalesforceOrg, load_config
from leadbridge_crm_sync.fakes import outbound_message
from leadbridge_crm_sync.policy import TokenBucket, http_outcome, next_attempt_at, parse_retry_after, should_pause
from leadbridge_crm_sync.settings import DEFAULT_RETRY_SCHEDULE
from leadbridge_crm_sync.webhooks import new_secret, signed_headers
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_default_schedule_retries_for_more_than_24_hours_then_gives_up():
    rng = random.Random(1)
    at, attempts = NOW, 1
    while (nxt := next_attempt_at(attempts, DEFAULT_RETRY_SCHEDULE, at, jitter=0, rng=rng)) is not None:
        at, attempts = nxt, attempts + 1
    assert at - NOW >= timedelta(hours=24)
    assert attempts == len(DEFAULT_RETRY_SCHEDULE) + 1


def test_jitter_spreads_retries_and_retry_after_is_honoured_but_capped():
    rng = random.Random(7)
    waits = {(next_attempt_at(2, (10.0, 100.0), NOW, jitter=0.2, rng=rng) - NOW).total_seconds() for _ in range(50)}
    assert len(waits) > 40 and all(80 <= w <= 120 for w in waits)
    honoured = next_attempt_at(1, (1.0,), NOW, jitter=0, rng=rng, retry_after=30)
    capped = next_attempt_at(1, (1.0,), NOW, jitter=0, rng=rng, retry_after=10_000, max_retry_after=60)
    assert honoured == NOW + timedelta(seconds=30) and capped == NOW + timedelta(seconds=60)


def test_retry_after_as_seconds_or_http_date():
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Tue, 01 Dec 2026 12:01:00 GMT", NOW) == 60
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None


def test_which_failures_block_the_endpoint():
    assert http_outcome(503, None, NOW).endpoint_down and http_outcome(429, "5", NOW).retry_after == 5
    assert http_outcome(401, None, NOW).endpoint_down
    assert not http_outcome(400, None, NOW).endpoint_down
    assert http_outcome(400, None, NOW, record_level_4xx=False).endpoint_down
    assert should_pause(NOW - timedelta(hours=7), NOW, 6 * 3600) and not should_pause(None, NOW, 1)


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=10, capacity=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    bucket.drain(0.0, 2.0)
    assert bucket.take(0.0) > 2.0


def test_config_names_the_file_and_the_problem(tmp_path: Path, monkeypatch):
    bad = tmp_path / "crm.yaml"
    bad.write_text("hubspot:\n  main: {portal_id: 1, token_env: NOPE_TOKEN}\nteams:\n  dach: [salesforce:x]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "NOPE_TOKEN" in str(err.value)
    monkeypatch.setenv("NOPE_TOKEN", "pat")
    with pytest.raises(ConfigError, match="not configured"):
        load_config(bad)
    bad.write_text("teams: [1, 2]")
    with pytest.raises(ConfigError, match="teams"):
        load_config(bad)


def test_the_example_config_is_valid(monkeypatch):
    for var in ("HUBSPOT_MAIN_TOKEN", "HUBSPOT_MAIN_CLIENT_SECRET", "SALESFORCE_ACME_CLIENT_SECRET"):
        monkeypatch.setenv(var, "x")
    config = load_config(Path(__file__).parents[1] / "crm-sync.example.yaml")
    assert config.destinations_for_team("dach") == ["salesforce:acme", "hubspot:main"]


def test_hubspot_signature_v3_and_the_five_minute_window():
    url, body = "https://crm.example.com/v1/inbound/hubspot/main?x=%3A", b'[{"eventId":1}]'
    ts = str(int(NOW.timestamp() * 1000))
    headers = {"x-hubspot-signature-v3": hs.signature_v3("s3cret", "POST", url, body, ts),
               "x-hubspot-request-timestamp": ts}
    hs.verify("s3cret", "POST", url, body, headers, NOW + timedelta(minutes=4))
    with pytest.raises(hs.SignatureError) as stale:
        hs.verify("s3cret", "POST", url, body, headers, NOW + timedelta(minutes=6))
    assert stale.value.stale
    with pytest.raises(hs.SignatureError):
        hs.verify("other", "POST", url, body, headers, NOW)
    with pytest.raises(hs.SignatureError):
        hs.verify("s3cret", "POST", url, body + b" ", headers, NOW)


def test_hubspot_call_and_lead_status_map_to_follow_ups():
    event = {"eventId": 5, "objectId": 77, "occurredAt": int(NOW.timestamp() * 1000)}
    call = {"kind": "calls", "properties": {"hs_timestamp": NOW.isoformat(),
                                            "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7"}}
    f = hs.engagement_follow_up(1, event, call, "lead-1", "ada", NOW)
    assert (f.touch_type, f.outcome, f.actor, f.occurred_at) == (TouchType.CALL, FollowUpOutcome.CONNECTED, "ada", NOW)
    again = hs.engagement_follow_up(1, {**event, "eventId": 6}, call, "lead-1", "ada", NOW)
    assert again.follow_up_id == f.follow_up_id, "one call is one touch, whatever event announced it"
    status = hs.property_follow_up(1, {**event, "propertyName": "hs_lead_status", "propertyValue": "UNQUALIFIED"},
                                   "lead-1", None, NOW)
    assert status.outcome == FollowUpOutcome.REJECTED and status.reason
    assert hs.property_follow_up(1, {**event, "propertyName": "hs_lead_status", "propertyValue": "NEW"},
                                 "lead-1", None, NOW) is None


def test_salesforce_outbound_message_parsing_and_mapping():
    org = SalesforceOrg(organization_id="00D000000000042AAA", login_url="https://x", client_id="c",
                        client_secret="s")
    body = outbound_message("00D000000000042AAA", [
        ("04l1", "Task", {"Id": "00T1", "WhoId": "00Q1", "OwnerId": "0051", "TaskSubtype": "Call",
                          "CallDisposition": "Connected - interested", "CreatedDate": "2026-12-01T12:00:00.000Z"}),
        ("04l2", "Lead", {"Id": "00Q1", "LeadBridge_Id__c": "lead-1", "Status": "Closed - Not Converted"})])
    msg = sf.parse(body)
    assert sf.same_org(msg.organization_id, "00D000000000042") and [n.object_type for n in msg.notifications] == [
        "Task", "Lead"]
    task = sf.task_follow_up(org.organization_id, msg.notifications[0], "lead-1", "ada", NOW)
    assert (task.touch_type, task.outcome, task.occurred_at) == (TouchType.CALL, FollowUpOutcome.CONNECTED, NOW)
    status = sf.lead_status_follow_up(org, msg.notifications[1], None, NOW)
    assert status.lead_id == "lead-1" and status.outcome == FollowUpOutcome.REJECTED and status.reason
    with pytest.raises(sf.BadMessage):
        sf.parse(b"<not-soap/>")
    with pytest.raises(sf.BadMessage):
        sf.parse(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')


def test_standard_webhooks_signatures_verify_with_the_package_and_carry_both_secrets_in_a_rotation():
    old, new = new_secret(), new_secret()
    body = b'{"type":"lead-routed"}'
    headers = signed_headers("msg_1", body, datetime.now(UTC), [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_a_bad_destinations_file_stops_the_service_with_a_clear_message(tmp_path: Path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "crm.yaml"
    bad.write_text("teams:\n  dach: [hubspot:nowhere]\n")
    result = subprocess.run([sys.executable, "-m", "leadbridge_crm_sync"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "CRM_SYNC_CONFIG_FILE": str(bad), "CRM_SYNC_PORT": "1"})
    assert result.returncode == 2
    assert f"crm-sync cannot start: crm-sync config {bad}" in result.stderr and "hubspot:nowhere" in result.stderr
