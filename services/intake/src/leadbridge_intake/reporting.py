"""Counting and logging what happened to a submission (ids only; never personal data)."""

from __future__ import annotations

import logging

from . import metrics
from .capture import CaptureResult
from .submission import channel_label

log = logging.getLogger("leadbridge.intake")

# what a client is told: a new lead, activity on a known lead, or a redelivery of one already stored
ANSWER = {"captured": "accepted", "activity": "activity_recorded", "duplicate": "duplicate"}


def record_result(result: CaptureResult, *, source: str, channel: str | None, dedupe_kind: str) -> None:
    label = channel_label(channel)
    if result.outcome == "captured":
        metrics.ACCEPTED.labels(source, label).inc()
    elif result.outcome == "activity":
        metrics.ACTIVITIES.labels(source, label).inc()
    else:
        metrics.DUPLICATES.labels(dedupe_kind).inc()
    log.info("lead %s", result.outcome, extra={"lead_id": result.lead_id, "event_id": result.event_id,
                                               "activity_id": result.activity_id, "source": source})
