"""`make run`: Kafka, PostgreSQL and every LeadBridge service as separate processes; Ctrl-C stops all."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

from . import cli
from .ports import port_open, wait_for_port

SERVICES = [  # (module, port)
    ("leadbridge_intake", 8001),
    ("leadbridge_scoring", 8002),
    ("leadbridge_router", 8003),
    ("leadbridge_sla_watcher", 8004),
]


def _runnable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None and importlib.util.find_spec(f"{module}.__main__") is not None


def main() -> int:
    cli.up()
    env = dict(os.environ)
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", cli.broker().bootstrap_servers)
    env.setdefault("DATABASE_URL", cli.postgres().url)
    procs: list[tuple[str, int, subprocess.Popen]] = []
    for module, port in SERVICES:
        if not _runnable(module):
            print(f"{module}: not built yet, skipped")
            continue
        if port_open(port):
            print(f"error: port {port} for {module} is taken; stop whatever listens there", file=sys.stderr)
            continue
        proc = subprocess.Popen([sys.executable, "-m", module], env={**env, "PORT": str(port)})
        procs.append((module, port, proc))
    try:
        for module, port, proc in procs:
            wait_for_port(port, 60, alive=lambda p=proc: p.poll() is None)
            print(f"{module}: http://127.0.0.1:{port}  (/docs, /healthz, /readyz, /metrics)")
        print("\nLeadBridge is running. Kafka:", env["KAFKA_BOOTSTRAP_SERVERS"], " PostgreSQL:", env["DATABASE_URL"])
        print("Ctrl-C stops the services; `make down` stops Kafka and PostgreSQL.\n")
        while all(p.poll() is None for _, _, p in procs):
            time.sleep(0.5)
        dead = [m for m, _, p in procs if p.poll() is not None]
        print(f"error: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, _, proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
