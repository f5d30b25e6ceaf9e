"""What the watcher announces when deadlines start, are superseded or are met. Pure: deadlines in, event data out.

- a routing that starts or stops a clock -> one ``sla-deadlines-set`` (the new deadlines, the superseded ids);
  a stale or repeated routing, or a return to nurture of a lead with no live deadline, announces nothing;
- a deadline that a touch turns met (in time or late) -> one ``sla-deadline-met``, exactly once: only the
  transition from not met to met announces (a deadline is met once, a later touch changes nothing).

Event ids are derived from what happened (lead + attempt, deadline id), so a replayed routing or touch
could never announce the same thing under two ids.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from leadbridge_contracts.events import SlaDeadline, SlaDeadlineMet, SlaDeadlinesSet

from .deadlines import Deadline, Route, RouteResult, Status

_NS = uuid.UUID("0f6a3c52-7b1e-4f7d-8a9e-3d2c1b0a9e87")
_NS_BYTES = _NS.bytes
MET = frozenset({Status.MET, Status.MET_LATE})


def deadlines_set(route: Route, policy: str, result: RouteResult) -> SlaDeadlinesSet | None:
    """The announcement of an accepted routing; None if it neither started nor superseded a deadline."""
    if not result.accepted or not (result.created or result.changed):
        return None
    return SlaDeadlinesSet(
        lead_id=route.lead_id, routing_attempt=route.attempt, assignee_id=route.assignee_id, team=route.team,
        policy=policy, set_at=route.routed_at,
        deadlines=[SlaDeadline(deadline_id=d.id, kind=d.kind, due_at=d.due_at, at_risk_at=d.at_risk_at)
                   for d in sorted(result.created, key=lambda d: (d.due_at, d.kind.value))],
        superseded_deadline_ids=sorted(d.id for d in result.changed),
    )


def deadline_met(before: Deadline | None, after: Deadline) -> SlaDeadlineMet | None:
    """The announcement that ``after`` was met (``before``: its previous state, None if just created)."""
    if after.status not in MET or after.met_at is None or (before is not None and before.status in MET):
        return None
    return SlaDeadlineMet(lead_id=after.lead_id, deadline_id=after.id, kind=after.kind, met_at=after.met_at,
                          late=after.status == Status.MET_LATE, due_at=after.due_at, routing_attempt=after.attempt)


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NS, name))`` without building a ``UUID``: SHA-1 of namespace + name, version 5, the
    RFC 4122 variant."""
    h = bytearray(hashlib.sha1(_NS_BYTES + name.encode()).digest()[:16])
    h[6], h[8] = (h[6] & 0x0F) | 0x50, (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def set_event_id(lead_id: str, attempt: int) -> str:
    return _uuid5(f"{lead_id}:{attempt}:deadlines-set")


def met_event_id(deadline_id: str) -> str:
    return _uuid5(f"{deadline_id}:met")


def event_time(data: SlaDeadlinesSet | SlaDeadlineMet, fallback: datetime) -> datetime:
    """When it happened: the routing time for a set, the touch time for a met deadline."""
    at = data.set_at if isinstance(data, SlaDeadlinesSet) else data.met_at
    return at or fallback
