"""The managers' views over HTTP, from events on the real topics into the real PostgreSQL read model."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from leadbridge_insights.app import create_app

try:  # a manager's bearer token, once the services require one (the authentication issue)
    from leadbridge_events.testing import auth_headers
except ImportError:  # pragma: no cover - before authentication
    def auth_headers(scopes=None) -> dict[str, str]:
        return {}

pytestmark = pytest.mark.integration


async def test_views_from_events_on_the_real_topics(settings, producer, unique_name, kit):
    app = create_app(settings, group_id=unique_name, auto_offset_reset="latest",
                     clock=kit.frozen_clock(kit.start + timedelta(hours=2)))
    async with app.router.lifespan_context(app):
        await kit.wait_consuming(app.state.runtime)
        story = await kit.publish_story(producer, unique_name)
        extra = await kit.publish_load_story(producer, story, unique_name)
        mine = {"campaign": story.campaign}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://insights",
                                     headers=auth_headers()) as client:

            async def projected() -> bool:
                live = (await client.get("/v1/views/live", params=mine)).json()
                load = (await client.get("/v1/views/load", params={"team": story.team})).json()
                funnel = (await client.get("/v1/views/funnel", params=mine)).json()
                return (live["at_risk"]["total"] == 1 and load["roster_known"] and funnel["counts"]["won"] == 1
                        and funnel["counts"]["captured"] == 6)

            await kit.eventually(projected)
            reacted = await kit.foreign_events(client, story)

            funnel = (await client.get("/v1/views/funnel", params=mine)).json()
            counts = {s["stage"]: s["count"] for s in funnel["stages"]}
            assert counts["captured"] == 6 and counts["accepted"] == 1 and counts["qualified"] == 1
            assert counts["won"] == 1 and counts["touched"] == 2
            if not reacted:
                assert (counts["mql"], counts["routed"]) == (3, 3)
            assert funnel["rejected_reasons"] == [{"reason": "no budget", "count": 1, "share": 1.0}]
            filtered = (await client.get("/v1/views/funnel", params={**mine, "rep": f"{unique_name}-rep-1"})).json()
            assert filtered["counts"]["captured"] == 1 and filtered["counts"]["won"] == 1

            speed = (await client.get("/v1/views/speed", params={**mine, "by": "campaign"})).json()
            touch = speed["first_touch"]["total"]
            # touched 15 and 30 minutes after capture; the at-risk lead is routed but not touched yet
            assert (touch["population"], touch["reached"]) == (3, 2)
            assert touch["median_seconds"] == 1350 and touch["p90_seconds"] == 1710
            assert touch["within"] == {"5m": 0.0, "1h": round(2 / 3, 4), "24h": round(2 / 3, 4)}
            assert touch["histogram"][3] == 2  # 15-60 minutes
            assert (touch["within_sla"], touch["breached"], touch["sla_compliance"]) == (1, 1, round(1 / 3, 4))
            by_rep = (await client.get("/v1/views/speed", params={**mine, "by": "rep"})).json()
            assert {r["key"] for r in by_rep["first_touch"]["rows"]} >= {f"{unique_name}-rep-1", f"{unique_name}-rep-2"}

            day = kit.start.date().isoformat()
            trend = (await client.get("/v1/views/trends", params={
                **mine, "unit": "day", "since": day, "until": (kit.start + timedelta(days=1)).date().isoformat()})).json()
            assert trend["x"] == [f"{day}T00:00:00+00:00"] or len(trend["x"]) == 1
            assert trend["captured"] == [6] and trend["won"] == [1] and trend["breached"] == [1]
            assert trend["compliance_pct"] == [round(100 * 1 / trend["routed"][0], 1)]

            load = (await client.get("/v1/views/load", params={"team": story.team})).json()
            reps = {r["rep"]: r for r in load["reps"]}
            assert reps[extra.rep]["open"] == 1 and reps[extra.rep]["max_open"] == 1 and reps[extra.rep]["at_capacity"]
            assert reps[f"{unique_name}-rep-2"]["availability"] == "out of office"
            assert reps[f"{unique_name}-rep-1"]["availability"] == "on shift"
            assert reps[f"{unique_name}-rep-2"]["breaches_week"] == 1
            (pool,) = load["pools"]
            assert (pool["waiting"], pool["overflows_week"]) == (1, 1)

            live = (await client.get("/v1/views/live", params=mine)).json()
            (risk,) = live["at_risk"]["rows"]
            assert risk["lead_id"] == extra.at_risk and risk["alert_state"] == "at_risk"
            assert risk["alert_owner"] == extra.rep and risk["seconds_left"] < 0  # due 18 min in, clock at 2 h
            if not reacted:
                assert [r["lead_id"] for r in live["limbo"]["rows"]] == [story.limbo]

            found = (await client.get("/v1/views/leads", params={"q": extra.name.split()[1].lower()})).json()
            assert [r["lead_id"] for r in found["rows"]] == [extra.waiting, extra.at_risk]
            assert found["rows"][1]["name"] == extra.name and found["rows"][1]["status"] == "routed"
            assert found["rows"][0]["status"] == "waiting"
            by_status = (await client.get("/v1/views/leads", params={**mine, "status": "won"})).json()
            assert [r["lead_id"] for r in by_status["rows"]] == [story.won]
            paged = (await client.get("/v1/views/leads", params={**mine, "per_page": 2, "page": 2})).json()
            assert paged["total"] == 6 and len(paged["rows"]) == 2
            assert (await client.get("/v1/views/leads", params={"status": "bogus"})).status_code == 422
            assert (await client.get("/v1/views/speed", params={"since": "2026-02-01", "until": "2026-01-01"})
                    ).status_code == 422

            paths = (await client.get("/openapi.json")).json()["paths"]
            for view in ("speed", "trends", "funnel", "load", "live", "leads", "options"):
                operation = paths[f"/v1/views/{view}"]["get"]
                assert operation["summary"] and "managers' views" in operation["tags"]
            speed_schema = paths["/v1/views/speed"]["get"]["responses"]["200"]["content"]["application/json"]
            assert speed_schema["schema"]["$ref"].endswith("/SpeedView")
