"""While the database is down, a service's API answers 503 with Retry-After and a JSON body, never a 500."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_intake.testing import make_settings, new_key, running


def lead() -> dict:
    return {"email": f"u{uuid.uuid4().hex[:10]}@example.com", "name": "Jane Roe", "company": "Acme",
            "country": "de", "consent": True}


@pytest.mark.integration
async def test_intake_answers_503_while_postgres_is_down_and_202_once_it_is_back(own_postgres, kafka_bootstrap):
    async with running(make_settings(own_postgres.url, kafka_bootstrap)) as (client, _app):
        key = await new_key(client)
        headers = {"X-API-Key": key}
        before = await client.post("/v1/leads", json=lead(), headers=headers)
        assert before.status_code == 202, before.text

        await asyncio.to_thread(own_postgres.stop, "immediate")
        for _ in range(3):  # the first request finds the pooled connections dead, the next ones cannot connect
            down = await client.post("/v1/leads", json=lead(), headers=headers)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "5"
            body = down.json()
            assert body["error"] == "dependency_unavailable" and body["dependency"] == "database"
        read = await client.get(f"/v1/leads/{before.json()['lead_id']}", headers=headers)
        assert read.status_code == 503 and read.json()["error"] == "dependency_unavailable"

        await asyncio.to_thread(own_postgres.start, lambda *_: None)
        for _ in range(100):
            after = await client.post("/v1/leads", json=lead(), headers=headers)
            if after.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert after.status_code == 202, after.text


@pytest.mark.parametrize("service", ["intake", "scoring", "router", "sla_watcher", "insights", "crm_sync"])
def test_every_service_answers_503_for_a_dependency_outage(service):
    import importlib

    app = importlib.import_module(f"leadbridge_{service}.app").create_app()
    assert app.state.dependency_error_handlers, f"{service} does not install the 503 handlers"
