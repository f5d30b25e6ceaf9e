"""Counting what became of every accepted lead (pure: the inputs are what `observe` read).

- final: the lead reached its final state on the topics (sales-ready: a `lead-routed` assigned; the others a
  `lead-scored` nurture).
- lost: some part of the system lost the lead or one of its events: intake does not know it (404), a
  consumer group committed past one of its events without processing or dead-lettering it, or the router,
  sla-watcher or insights lack what the topics show (no assignment, no SLA deadline, a timeline gap).
- stuck: not final after the system went quiet (never published, never scored or routed, dead-lettered).
- duplicate_routes: (lead, attempt) pairs with more than one routing decision, plus leads assigned to two reps
  (SLA escalation is off, so every lead is routed once).
- unexpected_dead_letters: dead letters other than the injected poison records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .faults import POISON_KEY, FaultWindow
from .load import MQL, LoadResult
from .observe import LeadViews, Rec

POISON = POISON_KEY.decode()


@dataclass
class FaultFigures:
    label: str
    downtime: float
    client_errors: dict[str, int]
    catch_up: float | None
    accepted_meanwhile: int
    error: str | None = None


@dataclass
class Findings:
    accepted: int = 0
    final: int = 0
    lost: int = 0
    duplicate_routes: int = 0
    unexpected_dead_letters: int = 0
    stuck: int = 0
    lost_why: Counter[str] = field(default_factory=Counter)
    stuck_why: Counter[str] = field(default_factory=Counter)
    # (group, topic, reason) -> n, besides the poison
    dead_letters: Counter[tuple[str | None, str | None, str | None]] = field(default_factory=Counter)
    poison_dead_letters: int = 0
    redelivered_records: int = 0
    faults: list[FaultFigures] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    quiet: bool = True
    # client errors from the kill of one broker of a cluster until the next fault (None: no such fault)
    broker_kill_client_errors: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicate_routes or self.unexpected_dead_letters or self.stuck
                    or self.broker_kill_client_errors)

    def line(self) -> str:
        return (f"chaos: accepted={self.accepted} final={self.final} lost={self.lost} "
                f"duplicate_routes={self.duplicate_routes} unexpected_dead_letters={self.unexpected_dead_letters} "
                f"stuck={self.stuck}" + ("" if self.broker_kill_client_errors is None
                                         else f" broker_kill_client_errors={self.broker_kill_client_errors}"))


def _by_lead(records: list[Rec], event_type: str | None = None) -> dict[str, list[Rec]]:
    out: dict[str, list[Rec]] = defaultdict(list)
    for r in records:
        if r.key != POISON and r.event_id and (event_type is None or r.event_type == event_type):
            out[r.key].append(r)
    return out


def _skipped(topics: dict[str, list[Rec]], committed: dict[str, dict[Any, int]], processed: dict[str, dict[str, float]],
             dlq_sources: set[tuple[str, str, int, int]]) -> list[tuple[str, Rec]]:
    """Events a group committed past without processing or dead-lettering them."""
    out = []
    for group, offsets in committed.items():
        done = processed.get(group, {})
        for tp, offset in offsets.items():
            for r in topics.get(tp.topic, ()):
                if (r.partition == tp.partition and r.offset < offset and r.event_id and r.key != POISON
                        and r.event_id not in done and (group, r.topic, r.partition, r.offset) not in dlq_sources):
                    out.append((group, r))
    return out


def _final_times(load: LoadResult, scored: dict[str, list[Rec]], routed: dict[str, list[Rec]],
                 deadlines: dict[str, list[Rec]]) -> dict[str, float]:
    """Lead id -> when it reached its final state (routed and its SLA deadline set, or nurtured)."""
    out = {}
    for lid, lead in load.accepted.items():
        if lead.kind == MQL:
            assigned = [r for r in routed.get(lid, ()) if (r.value or {}).get("outcome") == "assigned"]
            if assigned:
                out[lid] = max([min(r.ts for r in assigned), *(r.ts for r in deadlines.get(lid, ())[:1])])
        else:
            nurtured = [r for r in scored.get(lid, ()) if (r.value or {}).get("stage") == "nurture"]
            if nurtured and lid not in routed:
                out[lid] = min(r.ts for r in nurtured)
    return out


def _fault_figures(windows: list[FaultWindow], load: LoadResult, final_at: dict[str, float],
                   processed: dict[str, dict[str, float]], published: dict[str, float],
                   poison_dead_at: list[float]) -> list[FaultFigures]:
    figures = []
    for i, w in enumerate(windows):
        until = windows[i + 1].started if i + 1 < len(windows) else float("inf")
        errors = Counter(e.kind for e in load.errors if w.started <= e.at < until)
        if w.name == "poison":
            catch_up = max(poison_dead_at) - w.started if poison_dead_at else None
        else:
            done = [final_at[lid] for lid, a in load.accepted.items() if a.accepted_at <= w.restored and lid in final_at]
            done += [at for group in processed.values() for eid, at in group.items()
                     if published.get(eid, float("inf")) <= w.restored]
            catch_up = max(max(done, default=w.restored) - w.restored, 0.0)
        meanwhile = sum(1 for a in load.accepted.values() if w.started <= a.accepted_at <= w.restored)
        figures.append(FaultFigures(w.label, w.restored - w.started, dict(errors), catch_up, meanwhile, w.error))
    return figures


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def audit(load: LoadResult, windows: list[FaultWindow], topics: dict[str, list[Rec]], committed: dict[str, dict[Any, int]],
          processed: dict[str, dict[str, float]], views: LeadViews) -> Findings:
    f = Findings(accepted=len(load.accepted))
    scored = _by_lead(topics.get("lead-scored", []), "lead-scored")
    routed = _by_lead(topics.get("lead-routed", []), "lead-routed")
    captured = _by_lead(topics.get("lead-captured", []), "lead-captured")
    deadlines = _by_lead(topics.get("sla-deadlines", []), "sla-deadlines-set")
    every = [r for name, recs in topics.items() if not name.endswith(".dlq") for r in recs]
    of_lead = _by_lead(every)

    dead = [r for name, recs in topics.items() if name.endswith(".dlq") for r in recs]
    dlq_sources = {(r.headers.get("dlq_consumer_group", ""), r.headers.get("dlq_source_topic", ""),
                    int(r.headers.get("dlq_source_partition", -1)), int(r.headers.get("dlq_source_offset", -1)))
                   for r in dead}
    dead_leads = {r.key for r in dead if r.key != POISON}
    for r in dead:
        if r.key == POISON:
            f.poison_dead_letters += 1
        else:
            f.unexpected_dead_letters += 1
            f.dead_letters[(r.headers.get("dlq_consumer_group"), r.headers.get("dlq_source_topic"),
                            r.headers.get("dlq_reason"))] += 1
            f.examples.append(f"dead letter {r.key}: {r.headers.get('dlq_error', '')[:200]}")

    ids = Counter(r.event_id for r in every if r.event_id)
    f.redelivered_records = sum(n - 1 for n in ids.values() if n > 1)
    for recs in routed.values():
        per_attempt: dict[int, set[str | None]] = defaultdict(set)
        for r in recs:
            per_attempt[int((r.value or {}).get("attempt", 1))].add(r.event_id)
        f.duplicate_routes += sum(1 for events in per_attempt.values() if len(events) > 1)
        if len({(r.value or {}).get("assignee_id") for r in recs if (r.value or {}).get("assignee_id")}) > 1:
            f.duplicate_routes += 1

    skipped = defaultdict(set)
    for group, r in _skipped(topics, committed, processed, dlq_sources):
        skipped[r.key].add(group)
    final_at = _final_times(load, scored, routed, deadlines)
    f.final = len(final_at)

    for lid, lead in load.accepted.items():
        why = []
        if views.intake.get(lid) is None:
            why.append("unknown to intake (404)")
        why += [f"event skipped by {group}" for group in sorted(skipped.get(lid, ()))]
        if lid in final_at and lead.kind == MQL:
            if (views.router.get(lid) or {}).get("status") != "assigned":
                why.append(f"router shows {(views.router.get(lid) or {}).get('status', '404')}")
            if not deadlines.get(lid):
                why.append("routed, no SLA deadline")
        if lid in final_at:
            want = {"routed" if lead.kind == MQL else "nurture"}
            status = (views.intake.get(lid) or {}).get("status")
            if status is not None and status not in want:
                why.append(f"intake status {status}")
        timeline = views.insights.get(lid)
        on_topics = {r.event_type for r in of_lead.get(lid, ()) if r.event_type}
        if timeline is None or not on_topics <= set(timeline):
            why.append("insights timeline lacks " + ", ".join(sorted(on_topics - set(timeline or ()))))
        if why:
            f.lost += 1
            f.lost_why.update(why)
            f.examples.append(f"lost {lid} ({lead.kind}): {'; '.join(why)}")
        elif lid not in final_at:
            f.stuck += 1
            stage = ("dead-lettered" if lid in dead_leads else "never published" if lid not in captured
                     else "not scored" if lid not in scored else "scored, not routed" if lead.kind == MQL
                     else "scored " + ",".join((r.value or {}).get("stage", "?") for r in scored[lid]))
            f.stuck_why[stage] += 1
            f.examples.append(f"stuck {lid} ({lead.kind}): {stage}")

    published = {r.event_id: r.ts for r in every if r.event_id}
    poison_dead_at = [r.ts for r in dead if r.key == POISON]
    f.faults = _fault_figures(windows, load, final_at, processed, published, poison_dead_at)
    broker_kills = [row for row, w in zip(f.faults, windows, strict=True) if w.name == "kafka" and w.target]
    if broker_kills:  # one broker of a cluster: clients must not notice at all
        f.broker_kill_client_errors = sum(sum(row.client_errors.values()) for row in broker_kills)
    latencies = [final_at[lid] - a.accepted_at for lid, a in load.accepted.items() if lid in final_at]
    f.latency = {"p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "max": max(latencies, default=0.0)}
    return f
