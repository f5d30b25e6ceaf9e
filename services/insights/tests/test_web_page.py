"""The managers' page in a real headless Chromium (Playwright driving Debian's chromium), served by uvicorn,
fed by events on the real topics. It asserts what the page drew, not only that elements exist, and saves
screenshots at laptop and phone sizes to ``test-artifacts/insights/`` (git-ignored)."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from leadbridge_devstack.ports import free_port
from leadbridge_insights.app import create_app

try:  # a manager's bearer token, once the services require one (the authentication issue)
    from leadbridge_events.testing import auth_headers
except ImportError:  # pragma: no cover - before authentication
    def auth_headers(scopes=None) -> dict[str, str]:
        return {}

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "insights"


def signed_in(app):
    """The app behind a gateway that adds a signed-in manager's token to every request, as the page's session
    cookie does for a browser (the sign-in itself is tested in test_signin.py, with the auth)."""
    headers = [(k.lower().encode(), v.encode()) for k, v in auth_headers(["insights:read"]).items()]

    async def gateway(scope, receive, send):
        if scope["type"] == "http" and headers:
            scope = {**scope, "headers": [*scope["headers"], *headers]}
        await app(scope, receive, send)

    return gateway


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    assert path, "Chromium is required for this test: apt-get install -y chromium"
    return path


async def drawn(page, chart: str) -> dict:
    return await page.evaluate(f"window.__insights.drawn[{chart!r}]")


async def table(page, table_id: str) -> list[list[str]]:
    return await page.evaluate("""id => [...document.querySelectorAll(`#${id} tbody tr[data-key]`)]
        .map(tr => [...tr.children].map(td => td.textContent.trim()))""", table_id)


# every form control has an accessible name; every visible text's contrast with the background it is drawn
# on is at least 4.5:1 (WCAG AA; the background: the nearest ancestor's opaque colour)
A11Y_PROBLEMS = """() => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] === 1) return c; } return [255, 255, 255]; };
  const out = [];
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (el.type === 'hidden' || !el.offsetParent) continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
      || (el.tagName === 'BUTTON' && el.textContent.trim()) || el.title;
    if (!named) out.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name || el.id || el.className}`);
  }
  for (const el of document.querySelectorAll('body *')) {
    if (!el.offsetParent || ![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)} of ${el.tagName.toLowerCase()}.${el.className}: ${el.textContent.trim().slice(0, 30)}`);
  }
  return out;
}"""


async def loads(page, n: int) -> None:
    await page.wait_for_function(f"Number(document.body.dataset.loads || 0) >= {n}", timeout=20000)


async def test_the_page_draws_every_view_filters_searches_and_exports(settings, producer, unique_name, kit):
    from playwright.async_api import async_playwright

    chromium()  # fail early, before starting anything
    app = create_app(settings, group_id=unique_name, auto_offset_reset="latest",
                     clock=kit.frozen_clock(kit.start + timedelta(hours=2)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(signed_in(app), host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        await kit.eventually(lambda: _started(server), timeout=60)
        await kit.wait_consuming(app.state.runtime)
        story = await kit.publish_story(producer, unique_name)
        extra = await kit.publish_load_story(producer, story, unique_name)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=auth_headers()) as client:

            async def projected() -> bool:
                live = (await client.get("/v1/views/live", params={"campaign": story.campaign})).json()
                funnel = (await client.get("/v1/views/funnel", params={"campaign": story.campaign})).json()
                return live["at_risk"]["total"] == 1 and funnel["counts"]["won"] == 1

            await kit.eventually(projected)
            reacted = await kit.foreign_events(client, story)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{base}/?campaign={story.campaign}")
                await loads(page, 1)
                assert await page.evaluate("window.__insights.errors") == [] and errors == []
                assert await page.evaluate("typeof uPlot") == "function"  # the vendored library, no CDN
                assert await page.locator("#chart-touch canvas").count() == 1

                # speed to lead: touched 15 and 30 min after capture (15-60 min bucket), one routed lead untouched
                touch = await drawn(page, "chart-touch")
                assert touch["labels"][3] == "15-60m" and touch["labels"][-1] == "not touched"
                assert touch["series"]["leads"] == [0, 0, 0, 2, 0, 0, 0, 0, 1]
                speed = {r[0]: r for r in await table(page, "t-speed")}
                assert speed["total"][1:10] == ["3", "2", "23 min", "29 min", "0%", "66.7%", "66.7%", "33.3%", "1"]
                label = await page.get_attribute("#chart-touch", "aria-label")  # the numbers, for screen readers
                assert "15-60m 2" in label and "not touched 1" in label
                # trends: the story's day holds all six leads and its breach
                volume = await drawn(page, "chart-volume")
                assert sum(volume["series"]["captured"]) == 6 and sum(volume["series"]["won"]) == 1
                sla = await drawn(page, "chart-sla")
                assert sum(sla["series"]["breached"]) == 1
                day = kit.start.date().isoformat()
                (pct,) = [v for lbl, v in zip(sla["labels"], sla["series"]["% within SLA"], strict=False) if lbl == day]
                assert pct == (33.3 if not reacted else pct)
                # the funnel picture
                funnel = await drawn(page, "funnel")
                assert funnel["labels"] == ["captured", "mql", "routed", "touched", "accepted", "qualified", "won"]
                if not reacted:
                    assert funnel["series"]["leads"] == [6, 3, 3, 2, 1, 1, 1]
                assert await table(page, "t-rejected") == [["no budget", "1", "100%"]]
                if not reacted:  # unowned, so in no team: the limbo list of the campaign
                    assert [r[0] for r in await table(page, "t-limbo")] == [story.limbo]
                # rep load (the team's reps from the announced roster), pools, live lists
                await page.goto(f"{base}/?campaign={story.campaign}&team={story.team}")
                await loads(page, 1)
                load = {r[0]: r for r in await table(page, "t-load")}
                assert load[f"Cy ({extra.rep})"][2:5] == ["1 / 1", "1 / 1", "on shift"]
                assert load[f"Bo ({unique_name}-rep-2)"][4:] == ["out of office", "1"]
                assert (await table(page, "t-pools"))[0][:2] == [f"Team ({story.team})", "1"]
                risk = await table(page, "t-risk")
                assert [r[0] for r in risk] == [extra.at_risk] and risk[0][4:] == ["at risk", "overdue 62 min"]
                await page.screenshot(path=str(ARTIFACTS / "insights-1400x900.png"), full_page=True)
                assert await page.evaluate(A11Y_PROBLEMS) == []  # labels and contrast, with every view drawn

                # filters change the numbers, and the URL carries them (a shared link shows the same)
                await page.select_option("select[name=rep]", f"{unique_name}-rep-1")
                await page.click("#filters button[type=submit]")
                await loads(page, 2)
                assert (await drawn(page, "funnel"))["series"]["leads"] == [1, 1, 1, 1, 1, 1, 1]
                assert f"rep={unique_name}-rep-1" in page.url
                shared = await browser.new_page(viewport={"width": 390, "height": 844})
                await shared.goto(page.url)
                await loads(shared, 1)
                assert (await drawn(shared, "funnel"))["series"]["leads"] == [1, 1, 1, 1, 1, 1, 1]
                await shared.close()

                # find a lead by part of a name, open its story
                await page.goto(f"{base}/")
                await loads(page, 1)
                await page.fill("#find input[name=q]", extra.name.split()[1])
                await page.press("#find input[name=q]", "Enter")
                await page.wait_for_function("document.body.dataset.searches === '1'")
                found = await table(page, "t-leads")
                assert [r[0] for r in found] == [extra.waiting, extra.at_risk]
                assert found[1][1:3] == [extra.name, f"zoe.{unique_name[-6:]}@quigley.example"]
                await page.focus(f"#t-leads button.lead[data-lead='{extra.at_risk}']")  # by keyboard
                await page.keyboard.press("Enter")
                await page.wait_for_selector("#timeline li[data-type='sla-at-risk']")
                steps = await page.evaluate("[...document.querySelectorAll('#timeline li')].map(l => l.dataset.type)")
                assert steps == ["lead-captured", "lead-routed", "sla-at-risk"]
                assert "First-touch SLA at risk" in await page.inner_text("#timeline")
                assert f"lead={extra.at_risk}" in page.url
                assert await page.evaluate("document.activeElement.id") == "story"  # focus moves to the story

                # CSV downloads match the table
                async with page.expect_download() as info:
                    await page.click("button.csv[data-table='t-leads']")
                path = await (await info.value).path()
                rows = list(csv.reader(io.StringIO(Path(path).read_text())))
                assert rows[0][:2] == ["lead", "name"] and rows[1:] == found

                phone = await browser.new_page(viewport={"width": 390, "height": 844})
                await phone.goto(f"{base}/?campaign={story.campaign}&team={story.team}")
                await loads(phone, 1)
                assert await phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways page
                await phone.screenshot(path=str(ARTIFACTS / "insights-390x844.png"), full_page=True)
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=60)


async def _started(server: uvicorn.Server) -> bool:
    return server.started
