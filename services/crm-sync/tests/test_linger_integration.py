"""crm-sync lingers (``CRM_SYNC_CONSUMER_LINGER_MS``, 200 by default): its broker holds a fetch up to 200 ms, so
routings trickling in one by one are queued for the CRMs a handful per transaction. At 200 leads/s its CPU per
lead fell 0.51-0.57 -> 0.21-0.23 ms (docs/benchmarks.md, ninth round); a CRM call takes longer than the wait."""

from __future__ import annotations

import asyncio

import pytest
from leadbridge_crm_sync.settings import CrmSyncSettings
from leadbridge_events.producer import EventProducer

from .conftest import eventually, routed

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("crm", [{}, {"CRM_SYNC_CONSUMER_LINGER_MS": 0}], indirect=True, ids=["default", "off"])
async def test_crm_sync_lingers_so_a_trickle_of_routings_takes_few_transactions(crm):
    assert CrmSyncSettings().consumer_linger_ms == 200  # the default
    runtime = crm.app.state.runtime
    lingering = runtime.settings.consumer_linger_ms
    before, started = runtime.runner.stats.transactions, asyncio.get_running_loop().time()
    async with EventProducer(crm.bootstrap) as producer:
        for _ in range(30):  # one every 25 ms: a fetch that does not wait returns each on its own
            await producer.send(routed(crm.team))
            await asyncio.sleep(0.025)
    spread = asyncio.get_running_loop().time() - started  # ~0.8 s; longer on a loaded machine

    async def all_consumed() -> bool:
        text = (await crm.client.get("/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("leadbridge_events_consumed_total{") and f'"{runtime.group_id}"' in line) >= 30

    await eventually(all_consumed, what="30 routings consumed")
    batches = runtime.runner.stats.transactions - before
    windows = int(spread / 0.2) + 3  # the linger's windows the publishing spanned, partial ones at the ends, one spare
    if lingering:
        assert batches <= windows, f"{batches} transactions for 30 routings published over {spread:.1f} s"
    else:  # the control: what the test would see if crm-sync did not linger
        assert batches > 2 * windows, f"only {batches} transactions without a linger: the control shows nothing"
