"""Intake test fixtures: the app built by its factory, run through its lifespan, against the real stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from leadbridge_intake.testing import FakePlatforms, make_settings, new_key, running


@pytest.fixture(scope="session")
async def platforms() -> AsyncIterator[FakePlatforms]:
    fake = FakePlatforms()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=fake.port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield fake
    server.should_exit = True
    await task


@pytest.fixture
async def intake(fresh_database_url: str, kafka_bootstrap: str, platforms: FakePlatforms
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, str]]:
    """A running intake on a fresh database and the real broker, with an all-scopes API key."""
    async with running(make_settings(fresh_database_url, kafka_bootstrap, platforms)) as (client, app):
        yield client, app, await new_key(client)
