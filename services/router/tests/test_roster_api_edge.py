"""The roster API answers bad input with a 4xx that says what is wrong, never a 500; and needs its scopes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from leadbridge_events.testing import auth_headers

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from router_harness import always_on_roster, running_router  # noqa: E402

pytestmark = pytest.mark.integration


async def test_bad_roster_input_is_a_4xx_and_changes_nothing(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (_runtime, client):
        good = always_on_roster({"ann": None}, "edge")
        assert (await client.post("/roster/import", content=json.dumps(good))).status_code == 200
        before = (await client.get("/roster")).json()
        cases = {
            "broken YAML": (b"teams: [unclosed\n  - {", 422),
            "YAML tab indentation": (b"teams:\n\t- id: x\n", 422),
            "deep JSON": (b"[" * 5000 + b"]" * 5000, 400),
            "deep YAML": (b"- " * 3000 + b"x\n", 422),
            "NUL in JSON": (json.dumps({**good, "reps": [{"id": "a\u0000b", "team": "inbound"}]}).encode(), 422),
            "NUL in YAML": (b'teams: [{id: "in\\0bound"}]\nreps: []\nrules: []\n', 422),
            "not a mapping": (b"- 1\n- 2\n", 422),
            "not UTF-8": (b"\xff\xfe\xfa", 422),
        }
        for name, (body, status) in cases.items():
            r = await client.post("/roster/import", content=body)
            assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
            assert r.json()["detail"], name
        r = await client.patch("/reps/a%00b", json={"active": False})
        assert r.status_code == 422 and r.json()["error"] == "unstorable_characters"
        r = await client.put("/teams/x", content=b'{"id": "x\\u0000"}', headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert (await client.get("/roster")).json() == before


async def test_reading_needs_roster_read_and_changing_needs_roster_write(fresh_database_url, kafka_bootstrap,
                                                                          unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, _client):
        from leadbridge_router.app import create_app  # noqa: F401 - the harness's app is reachable through it

        transport = _client._transport  # the same app, without the harness's all-scopes token
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as anonymous:
            r = await anonymous.patch("/reps/ann", json={"active": False})
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            reader = auth_headers(["roster:read"])
            assert (await anonymous.get("/roster", headers=reader)).status_code == 200
            r = await anonymous.post("/roster/import", content=b"{}", headers=reader)
            assert r.status_code == 403 and r.json()["missing_scopes"] == ["roster:write"]
            r = await anonymous.get("/roster", headers=auth_headers(["roster:write"]))
            assert r.status_code == 403 and r.json()["missing_scopes"] == ["roster:read"]
