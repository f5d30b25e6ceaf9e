"""The faults of a chaos run, one after another while the load runs: crash, wait, restart; and poison records.

Each fault is recorded as a window: when it struck and when the crashed part was back (a service answering
/readyz again, the broker listening, PostgreSQL accepting connections).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from ..progress import Log
from .stack import ChaosStack

SERVICE_FAULTS = ("scoring", "router", "sla-watcher", "insights", "intake")
ALL_FAULTS = (*SERVICE_FAULTS, "kafka", "postgres", "poison")
POISON_KEY = b"chaos-poison"


@dataclass
class FaultWindow:
    name: str
    started: float  # epoch seconds: the kill (or the injection)
    restored: float = 0.0  # epoch seconds: back up (or injected)
    error: str | None = None
    target: str = ""  # which one, where there are several (the broker of a cluster)

    @property
    def label(self) -> str:
        return {"kafka": f"kill -9 Kafka broker{self.target}", "postgres": "PostgreSQL stop -m immediate",
                "poison": "poison record on each input topic"}.get(self.name, f"kill -9 {self.name}")


def input_topics() -> list[str]:
    """Every topic some service consumes (insights reads them all)."""
    from leadbridge_contracts.topics import ALL_TOPICS

    return [t.name for t in ALL_TOPICS]


async def inject_poison(bootstrap: str) -> None:
    """One record no consumer can decode (no CloudEvents headers, not JSON) on each input topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for topic in input_topics():
            await producer.send_and_wait(topic, b"\xffchaos: not an event", key=POISON_KEY)
    finally:
        await producer.stop()


async def busiest_broker(stack: ChaosStack) -> tuple[int, int, int]:
    """(index, partitions led, fewest replicas of a partition) of the broker leading the most partitions of
    the input topics: killing it moves the most leaderships while the load runs."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.brokers.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(input_topics())
    finally:
        await admin.close()
    led = Counter(p["leader"] for d in described for p in d["partitions"])
    node, count = max(led.items(), key=lambda kv: (kv[1], -kv[0]))
    replicas = min(len(p["replicas"]) for d in described for p in d["partitions"])
    return node - 1, count, replicas  # node ids are 1..N (cluster.py)


async def strike(stack: ChaosStack, name: str, down: float, log: Log) -> FaultWindow:
    window = FaultWindow(name, time.time())
    log(f"fault: {window.label}")  # a cluster's broker: named once it is chosen
    try:
        if name in SERVICE_FAULTS:
            await asyncio.to_thread(stack.kill_service, name)
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.restart_service, name)
        elif name == "kafka":
            victim = 0
            if len(stack.brokers.nodes) > 1:  # a cluster: one broker dies, the others take over its partitions
                victim, count, replicas = await busiest_broker(stack)
                window.target = f" {victim + 1} of {len(stack.brokers.nodes)}"
                log(f"  broker {victim + 1} leads {count} partitions of the input topics ({replicas}+ replicas each)")
            await asyncio.to_thread(stack.brokers.kill, victim)
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.brokers.restart, victim, lambda *_: None)
        elif name == "postgres":
            await asyncio.to_thread(stack.kill_postgres)
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.restart_postgres)
        elif name == "poison":
            await inject_poison(stack.brokers.bootstrap_servers)
        else:
            raise ValueError(f"unknown fault {name!r}")
    except Exception as exc:  # noqa: BLE001 - a failed restart is a finding, reported with the figures
        window.error = f"{type(exc).__name__}: {exc}"
        log(f"fault {name}: {window.error}")
    window.restored = time.time()
    log(f"fault: {name} back after {window.restored - window.started:.1f} s")
    return window


async def caught_up(stack: ChaosStack, threshold: int, timeout: float) -> float:
    """Wait (at most ``timeout``) until the consumer groups' lag and the unsent outbox rows are back to what
    steady load leaves (``threshold``), so the next fault's figures are its own. Returns the seconds waited."""
    from .observe import group_lags, unsent_outbox

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            busy = sum((await group_lags(stack.brokers.bootstrap_servers)).values())
            busy += sum((await unsent_outbox(stack.env["DATABASE_URL"])).values())
        except Exception:  # noqa: BLE001 - a part still recovering
            busy = threshold + 1
        if busy <= threshold:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def run_faults(stack: ChaosStack, names: list[str], *, warmup: float, down: float, gap: float,
                     settle_threshold: int = 30, settle_timeout: float = 30.0, log: Log = print) -> list[FaultWindow]:
    """Strike each fault in turn: ``warmup`` seconds of load first; between faults, wait for the backlog to
    drain (at most ``settle_timeout``), then ``gap`` seconds more of load."""
    unknown = set(names) - set(ALL_FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")
    await asyncio.sleep(warmup)
    windows = []
    for i, name in enumerate(names):
        windows.append(await strike(stack, name, down, log))
        if i < len(names) - 1:
            waited = await caught_up(stack, settle_threshold, settle_timeout)
            if waited >= settle_timeout:
                log(f"backlog not drained after {settle_timeout:.0f} s; striking the next fault anyway")
            await asyncio.sleep(gap)
    return windows
