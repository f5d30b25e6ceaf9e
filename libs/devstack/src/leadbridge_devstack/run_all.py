"""`make run`: Kafka, PostgreSQL and every LeadBridge service as separate processes; Ctrl-C stops all."""

from __future__ import annotations

import importlib.util
import sys
import time

from . import cli
from .paths import state_dir
from .ports import port_open
from .system import SERVICES, start_system


def _runnable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None and importlib.util.find_spec(f"{module}.__main__") is not None


def main() -> int:
    cli.up()
    env = {"KAFKA_BOOTSTRAP_SERVERS": cli.broker().bootstrap_servers, "DATABASE_URL": cli.postgres().url}
    names = []
    for spec in SERVICES:
        if not _runnable(spec.module):
            print(f"{spec.name}: not built yet, skipped")
        elif port_open(spec.default_port):
            print(f"error: port {spec.default_port} for {spec.name} is taken; stop whatever listens there",
                  file=sys.stderr)
            return 1
        else:
            names.append(spec.name)
    log_dir = state_dir() / "logs"
    print(f"starting {', '.join(names)} (logs in {log_dir}) ...")
    system = start_system(env, only=tuple(names), log_dir=log_dir)
    try:
        print()
        for svc in system.services.values():
            print(f"  {svc.spec.name:<12} {svc.url}   (/docs, /healthz, /readyz, /metrics)")
        print(f"\n  kafka        {env['KAFKA_BOOTSTRAP_SERVERS']}\n  postgres     {env['DATABASE_URL']}")
        print("\nLeadBridge is running. Ctrl-C stops the services; `make down` stops Kafka and PostgreSQL.\n")
        while system.alive():
            time.sleep(0.5)
        dead = [n for n, s in system.services.items() if s.process.poll() is not None]
        print(f"error: {', '.join(dead)} exited (see {log_dir}); stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        system.stop()


if __name__ == "__main__":
    raise SystemExit(main())
