"""Over-deep JSON and NUL characters are refused at the edge of every service (pure: no stack needed)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from leadbridge_events.edge import JsonDepthAndNulGuard, JsonTooDeep, has_nul, json_depth, loads_json


def test_depth_counts_brackets_outside_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000


def test_loads_json_refuses_deep_nesting_before_recursing():
    with pytest.raises(JsonTooDeep):
        loads_json(b"[" * 100_000 + b"]" * 100_000)
    assert loads_json('{"a": [[1]]}') == {"a": [[1]]}


def test_nul_in_text_or_as_an_escape_but_not_an_escaped_backslash():
    assert has_nul(b'{"a": "x\\u0000"}') and has_nul(b"a\x00b") and has_nul(b'"\\\\\\u0000"')
    assert not has_nul(b'{"a": "\\\\u0000"}')  # a backslash, then the text u0000


def test_the_guard_answers_4xx_with_a_body_and_passes_the_rest():
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    @app.get("/items/{item}")
    async def item(item: str) -> dict:
        return {"item": item}

    client = TestClient(JsonDepthAndNulGuard(app))
    deep = client.post("/echo", content=b"[" * 5000 + b"]" * 5000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and deep.json()["error"] == "bad_json"
    nul = client.post("/echo", content=json.dumps({"name": "a\u0000b"}), headers={"Content-Type": "application/json"})
    assert nul.status_code == 422 and nul.json()["detail"][0]["msg"]
    assert client.get("/items/a%00b").status_code == 422
    assert client.get("/items/x", params={"q": "\x00"}).status_code == 422
    assert client.post("/echo", json={"name": "fine", "nested": [[1]]}).json() == {"name": "fine", "nested": [[1]]}
    assert client.get("/items/ok").json() == {"item": "ok"}


def test_metrics_can_be_served_on_a_port_of_their_own():
    import urllib.request

    from leadbridge_devstack.ports import free_port
    from leadbridge_events.runtime import serve_metrics_separately
    from leadbridge_events.settings import BackboneSettings

    assert serve_metrics_separately(BackboneSettings()) is None
    port = free_port()
    server = serve_metrics_separately(BackboneSettings(METRICS_PORT=port, METRICS_HOST="127.0.0.1"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"python_info" in resp.read()
    finally:
        server.shutdown()
