"""Counting and logging what happened to a submission (ids only; never personal data)."""

from __future__ import annotations

import logging
from typing import Any

from . import metrics
from .capture import CaptureResult
from .submission import channel_label

log = logging.getLogger("leadbridge.intake")

# what a client is told: a new lead, activity on a known lead, or a redelivery of one already stored
ANSWER = {"captured": "accepted", "activity": "activity_recorded", "duplicate": "duplicate"}


def record_result(result: CaptureResult, *, source: str, channel: str | None, dedupe_kind: str) -> None:
    label = channel_label(channel)
    if result.outcome == "captured":
        _child(metrics.ACCEPTED, source, label).inc()
    elif result.outcome == "activity":
        _child(metrics.ACTIVITIES, source, label).inc()
    else:
        _child(metrics.DUPLICATES, dedupe_kind).inc()
    if log.isEnabledFor(logging.INFO):
        log.info("lead %s", result.outcome, extra={"lead_id": result.lead_id, "event_id": result.event_id,
                                                   "activity_id": result.activity_id, "source": source})


_CHILDREN: dict[tuple[Any, ...], Any] = {}  # bounded: sources are API keys' and labels are bounded


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once (prometheus_client checks and joins the labels each time)."""
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child
