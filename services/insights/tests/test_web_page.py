"""The managers' web page in a real headless Chromium, served by uvicorn, fed by events on the real topics."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from leadbridge_devstack.ports import free_port

from leadbridge_events.testing import auth_headers
from leadbridge_insights.app import create_app

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--virtual-time-budget=15000"]


def signed_in(app):
    """The app behind a gateway that adds a manager's token: Chromium's requests then carry it, like a
    signed-in browser's session cookie (the sign-in itself: test_signin.py)."""
    header = (b"authorization", auth_headers(["insights:read"])["Authorization"].encode())

    async def gateway(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "headers": [*scope["headers"], header]}
        await app(scope, receive, send)

    return gateway


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    assert path, "Chromium is required for this test: apt-get install -y chromium"
    return path


def table_rows(dom: str, table_id: str) -> dict[str, list[str]]:
    """key -> cell texts of the rows of one table in the dumped DOM."""
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S)
    assert match, f"no table #{table_id} in the page"
    rows = {}
    for key, body in re.findall(r'<tr data-key="([^"]*)"[^>]*>(.*?)</tr>', match.group(1), re.S):
        rows[html.unescape(key)] = [html.unescape(re.sub(r"<[^>]+>", "", c))
                                    for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
    return rows


async def dump_dom(url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="insights-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_page_shows_the_funnel_and_sla_compliance(settings, producer, unique_name, kit):
    chromium()  # fail early, before starting anything
    app = create_app(settings, group_id=unique_name, auto_offset_reset="latest",
                     clock=kit.frozen_clock(kit.start + timedelta(hours=2)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(signed_in(app), host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        await kit.eventually(lambda: _started(server), timeout=60)
        await kit.wait_consuming(app.state.runtime)
        story = await kit.publish_story(producer, unique_name)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=auth_headers()) as client:

            async def projected() -> bool:
                rows = (await client.get("/v1/funnel", params={"by": "campaign"})).json()["rows"]
                mine = [r for r in rows if r["key"] == story.campaign]
                return bool(mine) and mine[0]["won"] == 1 and mine[0]["nurtured"] == 2 and mine[0]["routed"] >= 2

            await kit.eventually(projected)
            dom = await dump_dom(f"{base}/?by=campaign")
            reacted = await kit.foreign_events(client, story)
        assert 'data-loaded="true"' in dom, dom[-3000:]
        funnel = table_rows(dom, "funnel")
        # key, captured, MQL, nurtured, routed, first touch in SLA, 0, 1-3, 4+, accepted, rejected, qualified,
        # won, lost, limbo, reasons
        row = funnel[story.campaign]
        assert row[:2] + row[3:4] + row[9:14] + row[15:] == [
            story.campaign, "4", "2", "1", "1", "1", "1", "0", "rejected: no budget ×1"]
        if not reacted:  # else a live router may have routed the limbo lead meanwhile
            assert row == [story.campaign, "4", "3", "2", "2", "1", "0", "2", "0", "1", "1", "1", "1", "0", "1",
                           "rejected: no budget ×1"]
        assert "total" in funnel
        sla = table_rows(dom, "sla")
        assert sla[story.team] == [story.team, "2", "1", "50%", "1", "1", "0"]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=60)


async def _started(server: uvicorn.Server) -> bool:
    return server.started
