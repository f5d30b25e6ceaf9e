"""Group commit keeps every capture's guarantees: concurrent captures share transactions, yet each request
gets its own answer, a person is still one lead, a dedupe key still one capture, and one bad lead fails
only itself."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_intake.submission import LeadSubmission
from leadbridge_intake.tables import activities, leads, outbox
from sqlalchemy import func, select

pytestmark = pytest.mark.integration


def _email() -> str:
    return f"g{uuid.uuid4().hex[:10]}@example.com"


async def _count(app, stmt) -> int:
    async with app.state.runtime.sessions() as session:
        return (await session.execute(stmt)).scalar_one()


async def test_concurrent_captures_share_commits_and_each_gets_its_own_lead(intake):
    client, app, key = intake
    emails = [_email() for _ in range(40)]
    answers = await asyncio.gather(*(client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": e})
                                     for e in emails))
    assert [a.status_code for a in answers] == [202] * 40
    ids = [a.json()["lead_id"] for a in answers]
    assert len(set(ids)) == 40
    committer = app.state.ctx.captures
    assert committer.largest_group > 1 and committer.groups_committed < 40  # grouped, not one by one
    async with app.state.runtime.sessions() as session:
        stored = dict((await session.execute(select(leads.c.id, leads.c.email).where(leads.c.id.in_(ids)))).all())
        events = (await session.execute(select(outbox.c.key).where(outbox.c.key.in_(ids)))).scalars().all()
    assert [stored[i] for i in ids] == emails  # each request answered with ITS lead
    assert sorted(events) == sorted(ids)  # one event per lead, in the same transactions


async def test_same_person_and_same_key_in_one_burst(intake):
    client, app, key = intake
    known, twice = _email(), _email()
    first = await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": known})
    idem, idem_body = f"idem-{uuid.uuid4().hex}", {"email": _email()}  # a retried request: same key, same body
    burst = await asyncio.gather(
        client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": twice}),
        client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": twice}),  # a double click
        client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": known}),  # a repeat of an older lead
        client.post("/v1/leads", headers={"X-API-Key": key, "Idempotency-Key": idem}, json=idem_body),
        client.post("/v1/leads", headers={"X-API-Key": key, "Idempotency-Key": idem}, json=idem_body),
        *(client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": _email()}) for _ in range(10)),
    )
    assert all(a.status_code == 202 for a in burst)
    a, b, repeat, k1, k2 = (r.json() for r in burst[:5])
    assert a["lead_id"] == b["lead_id"] and sorted([a["status"], b["status"]]) == ["accepted", "activity_recorded"]
    assert repeat == {"lead_id": first.json()["lead_id"], "status": "activity_recorded"}
    assert k1["lead_id"] == k2["lead_id"] and sorted([k1["status"], k2["status"]]) == ["accepted", "duplicate"]
    assert await _count(app, select(func.count()).select_from(leads).where(leads.c.email == twice)) == 1
    assert await _count(app, select(func.count()).select_from(activities)
                        .where(activities.c.lead_id.in_([a["lead_id"], first.json()["lead_id"]]))) == 2
    assert await _count(app, select(leads.c.activity_count).where(leads.c.email == known)) == 1
    reused = await asyncio.gather(*(client.post("/v1/leads", headers={"X-API-Key": key, "Idempotency-Key": idem},
                                                json={"email": _email()}) for _ in range(3)))
    assert [r.status_code for r in reused] == [422] * 3  # the same key with another body (IETF draft)


async def test_one_bad_lead_fails_only_itself(intake):
    _client, app, _key = intake
    committer = app.state.ctx.captures
    now = datetime.now(UTC)

    def profile() -> object:
        return LeadSubmission.model_validate({"email": _email()}).profile(source="test")

    good = [profile() for _ in range(12)]
    # a lead PostgreSQL refuses (a source longer than its column; model_copy skips validation): it fails the
    # whole group's transaction
    bad = profile().model_copy(update={"source": "s" * 150})
    groups_before = committer.groups_committed
    outcomes = await asyncio.gather(
        *(committer.capture(p, now=now, repeat_window=timedelta(days=30)) for p in [*good[:6], bad, *good[6:]]),
        return_exceptions=True)
    assert isinstance(outcomes[6], Exception)
    fine = [o for i, o in enumerate(outcomes) if i != 6]
    assert all(o.outcome == "captured" for o in fine)
    assert await _count(app, select(func.count()).select_from(leads)
                        .where(leads.c.id.in_([o.lead_id for o in fine]))) == 12
    assert committer.groups_committed == groups_before  # the failed group was stored one by one instead


async def test_a_group_plans_its_statements_per_execution(intake, monkeypatch):
    """A cached generic plan made while ``leads`` was small scanned the whole table per member once it grew
    (group_capture.BEGIN): the group's transaction plans each statement with the table as it is."""
    import leadbridge_intake.group_commit as group_commit

    seen: list[tuple[str, bool]] = []
    real = group_commit.capture_group

    async def spy(conn, members, engine=None):
        results = await real(conn, members, engine)  # the group's transaction, not committed yet
        seen.append((await conn.fetchval("SELECT current_setting('plan_cache_mode')"), conn.is_in_transaction()))
        return results

    monkeypatch.setattr(group_commit, "capture_group", spy)
    client, _app, key = intake
    answers = await asyncio.gather(*(client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": _email()})
                                     for _ in range(5)))
    assert [a.status_code for a in answers] == [202] * 5
    assert seen and set(seen) == {("force_custom_plan", True)}
    async with _app.state.runtime.engine.connect() as conn:  # only inside the group's transaction (SET LOCAL)
        raw = (await conn.get_raw_connection()).driver_connection
        assert await raw.fetchval("SELECT current_setting('plan_cache_mode')") == "auto"


class _Counting:
    """An asyncpg connection that counts the round trips made through it."""

    def __init__(self, conn) -> None:
        self.conn, self.trips = conn, 0

    def __getattr__(self, name):
        method = getattr(self.conn, name)
        if name not in ("execute", "fetch", "fetchval", "fetchrow"):
            return method

        async def counted(*args):
            self.trips += 1
            return await method(*args)
        return counted


async def test_a_mixed_group_in_few_round_trips(intake, monkeypatch):
    """New leads, a test lead (no person locks), a repeat person and a retried Idempotency-Key in one group:
    each gets its answer, the repeat is an activity (no second lead row), and a group of new leads costs
    three round trips before its COMMIT (BEGIN with the locks, look-up with the inserts, the outbox)."""
    import leadbridge_intake.group_commit as group_commit

    trips: list[tuple[int, int]] = []
    real = group_commit.capture_group

    async def spy(conn, members, engine=None):
        counting = _Counting(conn)
        results = await real(counting, members, engine)
        trips.append((len(members), counting.trips))
        return results

    monkeypatch.setattr(group_commit, "capture_group", spy)
    _client, app, _key = intake
    committer = app.state.ctx.captures
    now, window = datetime.now(UTC), timedelta(days=30)

    def profile(email: str, **update) -> object:
        return LeadSubmission.model_validate({"email": email}).profile(source="test").model_copy(update=update)

    known, idem = _email(), f"idem-{uuid.uuid4().hex}"
    first = await committer.capture(profile(known), now=now, repeat_window=window)
    keyed = await committer.capture(profile(_email()), now=now, repeat_window=window, dedupe_scope="key:t",
                                    dedupe_key=idem, fingerprint="f1")
    fresh = [_email() for _ in range(5)]
    outcomes = await asyncio.gather(
        *(committer.capture(profile(e), now=now, repeat_window=window) for e in fresh),
        committer.capture(profile(known), now=now, repeat_window=window),  # a repeat person
        committer.capture(profile(_email(), is_test=True), now=now, repeat_window=window),
        committer.capture(profile(_email()), now=now, repeat_window=window, dedupe_scope="key:t", dedupe_key=idem,
                          fingerprint="f1"))
    *new, repeat, test_lead, retried = outcomes
    assert [o.outcome for o in new] == ["captured"] * 5 and len({o.lead_id for o in new}) == 5
    assert (repeat.outcome, repeat.lead_id) == ("activity", first.lead_id)
    assert test_lead.outcome == "captured"
    assert (retried.outcome, retried.lead_id) == ("duplicate", keyed.lead_id)
    assert await _count(app, select(func.count()).select_from(leads).where(leads.c.email == known)) == 1
    assert await _count(app, select(leads.c.activity_count).where(leads.c.email == known)) == 1
    assert await _count(app, select(leads.c.status).where(leads.c.id == test_lead.lead_id)) == "test"
    assert await _count(app, select(func.count()).select_from(leads)
                        .where(leads.c.email.in_(fresh))) == 5
    assert (1, 3) in trips  # a lone new lead: BEGIN + locks, look-up + insert, outbox (then the COMMIT)


async def test_the_one_lead_path_plans_its_look_up_per_execution(intake):
    """The one-lead path (group commit off, a failed group's members, the fetcher) has the same cached
    look-up: its lock statement sets plan_cache_mode for the rest of its transaction."""
    from leadbridge_intake.capture import capture_lead
    from sqlalchemy import text

    _client, app, _key = intake
    profile = LeadSubmission.model_validate({"email": _email()}).profile(source="test")
    async with app.state.runtime.transaction() as tx:
        result = await capture_lead(tx, profile, now=datetime.now(UTC), repeat_window=timedelta(days=30))
        setting = (await tx.session.execute(text("SELECT current_setting('plan_cache_mode')"))).scalar()
    assert result.outcome == "captured" and setting == "force_custom_plan"


async def test_a_group_stores_what_the_one_lead_path_stores(intake):
    """The group's rows are built its own way (the profile's JSON by pydantic's encoder, the marked event at
    once: group_capture): the same lead row and outbox row as the one-lead path (``capture_lead``) writes."""
    import json

    from leadbridge_intake.capture import capture_lead

    _client, app, _key = intake
    now, window = datetime.now(UTC), timedelta(days=30)
    body = {"name": "Zoë Ørsted \u2603 \"quoted\"", "company": "Café <&> Co", "company_size": "51-200",
            "country": "DE", "consent": True, "channel": "Paid", "form_type": "Demo Request",
            "utm": {"utm_source": "ü\\n"}, "custom": {"seats": "40", "note": "line\nbreak \t tab"}}

    def profile(email: str) -> object:
        return LeadSubmission.model_validate({**body, "email": email}).profile(source="test")

    grouped = await app.state.ctx.captures.capture(profile(_email()), now=now, repeat_window=window)
    async with app.state.runtime.transaction() as tx:
        single = await capture_lead(tx, profile(_email()), now=now, repeat_window=window)
    rows = {}
    async with app.state.runtime.sessions() as session:
        for result in (grouped, single):
            lead = (await session.execute(select(leads).where(leads.c.id == result.lead_id))).mappings().one()
            event = (await session.execute(select(outbox).where(outbox.c.key == result.lead_id))).mappings().one()
            rows[result.lead_id] = (dict(lead), dict(event))

    def same_shape(lead_id: str) -> tuple[object, ...]:
        lead, event = rows[lead_id]
        profile = {**lead["profile"], "contact": {**lead["profile"]["contact"], "email": None}}
        value = json.loads(event["value"])
        value = {**value, "lead_id": None, "profile": {**value["profile"], "contact": None}}
        ids = ("ce_id", "ce_subject", "ce_leadid", "ce_correlationid")
        headers = {k: (None if k in ids else v) for k, v in event["headers"].items()}
        assert lead["profile"] == json.loads(event["value"])["profile"]  # the row's profile is the event's
        assert event["headers"]["ce_firstoflead"] == event["headers"]["ce_time"]
        return (profile, {k: v for k, v in lead.items() if k not in ("id", "email", "profile")}, event["topic"],
                value, headers)

    assert grouped.outcome == single.outcome == "captured"
    assert same_shape(grouped.lead_id) == same_shape(single.lead_id)
    assert rows[grouped.lead_id][0]["profile"]["contact"]["name"] == body["name"]
