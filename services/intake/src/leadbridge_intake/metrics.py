"""Intake's Prometheus metrics. Labels are bounded (reason codes, known channels); never per lead or person."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ACCEPTED = Counter("intake_leads_accepted_total", "New leads accepted", ["source", "channel"])
ACTIVITIES = Counter("intake_activities_total", "Repeat submissions recorded as activity on an existing lead",
                     ["source", "channel"])
DUPLICATES = Counter("intake_duplicates_total", "Redeliveries deduped (Idempotency-Key or platform id)", ["kind"])
REJECTED = Counter("intake_rejected_total", "Requests rejected", ["reason"])
FOLLOW_UPS = Counter("intake_follow_ups_total", "Follow-ups logged", ["touch_type", "outcome"])
FETCH_ATTEMPTS = Counter("intake_platform_fetch_attempts_total", "Platform lead fetches", ["platform", "result"])
FETCH_PENDING = Gauge("intake_platform_fetch_pending", "Platform leads waiting to be fetched", ["platform"])
QUARANTINED = Counter("intake_quarantined_total", "Platform leads kept in quarantine (delivered, but unusable)",
                      ["platform", "reason"])
QUARANTINE_RELEASED = Counter("intake_quarantine_released_total", "Quarantined leads re-processed into leads",
                              ["platform"])
QUARANTINE_OPEN = Gauge("intake_quarantine_open", "Platform leads waiting in quarantine", ["platform"])
