"""Test helpers: serve a fake on a local port (in a thread, restartable), a Standard Webhooks receiver, and
HubSpot-signed requests. Used by crm-sync's tests, the end-to-end test and ``make demo``."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, deque
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .inbound_hubspot import signature_v3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """An ASGI app on 127.0.0.1:<port> in a background thread; ``stop()`` and ``start()`` again (a restart)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app, self.port = app, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Served:
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebhookReceiver:
    """A subscriber's endpoint: verifies Standard Webhooks signatures and dedupes by ``webhook-id``, as the
    specification asks receivers to; counts every delivery so tests can prove exactly-once processing."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.seen: Counter[str] = Counter()          # webhook-id -> deliveries received (duplicates included)
        self.messages: dict[str, dict[str, Any]] = {}  # webhook-id -> the verified payload, first copy
        self.order: list[str] = []                   # webhook-ids in processing order (first copies)
        self.rejected = 0
        self.received_at: dict[str, float] = {}      # webhook-id -> first verified delivery, epoch seconds
        self.fail_next: deque[tuple[int, dict[str, str]]] = deque()
        self.delay_seconds = 0.0
        self.app = FastAPI()
        self.app.add_api_route("/hook", self._hook, methods=["POST"])

    async def _hook(self, request: Request) -> Any:
        body = await request.body()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.fail_next:
            status, headers = self.fail_next.popleft()
            return JSONResponse({"error": "injected"}, status_code=status, headers=headers)
        try:
            payload = Webhook(self.secret or "").verify(body, dict(request.headers))
        except (WebhookVerificationError, Exception):  # noqa: BLE001 - any bad signature is a 401
            self.rejected += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        msg_id = request.headers["webhook-id"]
        self.seen[msg_id] += 1
        if msg_id not in self.messages:
            self.received_at[msg_id] = time.time()
            self.messages[msg_id] = payload
            self.order.append(msg_id)
        return {"ok": True}

    def of_lead(self, lead_id: str) -> list[dict[str, Any]]:
        return [self.messages[m] for m in self.order if self.messages[m]["data"].get("lead_id") == lead_id]


def hubspot_headers(secret: str, url: str, body: bytes, *, timestamp_ms: int | None = None,
                    method: str = "POST") -> dict[str, str]:
    ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    return {"X-HubSpot-Signature-v3": signature_v3(secret, method, url, body, ts),
            "X-HubSpot-Request-Timestamp": ts, "Content-Type": "application/json"}
