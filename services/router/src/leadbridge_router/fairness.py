"""Weighted round robin that stays fair across restarts and roster changes. Pure.

Each pool keeps a virtual time ``vtime``; each rep in it keeps ``pass_`` (virtual finish of their last
lead), ``assigned`` and ``last_assigned_at``. A lead goes to the available rep whose next virtual start
``max(pass_, vtime)`` is smallest (start-time fair queuing), then the smaller virtual finish
(``start + 1/weight``); remaining ties go to the least recently assigned rep, then the id.
Because a rep's start is lifted to the pool's virtual time, a new rep, or one back from leave, joins at
par instead of getting a burst, and nothing ever needs resetting. All of it is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from .roster import Rep


@dataclass(frozen=True)
class RepCounter:
    pass_: float = 0.0
    assigned: int = 0
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class PoolState:
    vtime: float = 0.0
    counters: dict[str, RepCounter] = field(default_factory=dict)

    def counter(self, rep_id: str) -> RepCounter:
        return self.counters.get(rep_id, RepCounter())


def _start(state: PoolState, rep: Rep) -> float:
    return max(state.counter(rep.id).pass_, state.vtime)


def pick(state: PoolState, candidates: list[Rep]) -> Rep | None:
    """The next rep among ``candidates`` (all available, weight > 0); None if there are none."""
    if not candidates:
        return None

    def key(rep: Rep) -> tuple[float, float, int, float, str]:
        start = _start(state, rep)
        last = state.counter(rep.id).last_assigned_at
        never = 0 if last is None else 1
        return (round(start, 9), round(start + 1.0 / rep.weight, 9), never, last.timestamp() if last else 0.0, rep.id)

    return min(candidates, key=key)


def record(state: PoolState, rep: Rep, now: datetime) -> PoolState:
    """The pool state after assigning one lead to ``rep`` at ``now``."""
    c = state.counter(rep.id)
    start = max(c.pass_, state.vtime)
    counters = dict(state.counters)
    counters[rep.id] = replace(c, pass_=start + 1.0 / rep.weight, assigned=c.assigned + 1, last_assigned_at=now)
    return PoolState(vtime=start, counters=counters)
