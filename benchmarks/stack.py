"""What every benchmark runs on: a throwaway, DURABLE PostgreSQL and a throwaway Kafka broker.

Durable means what production runs: ``fsync=on``, ``synchronous_commit=on``, ``full_page_writes=on`` (the
test stack turns them off for speed, which would flatter both LeadBridge and the raw baselines alike).

As a wrapper: ``python benchmarks/stack.py [--kafka] -- <command...>`` starts the stack, runs the command
with ``DATABASE_URL`` (and ``KAFKA_BOOTSTRAP_SERVERS``) pointing at it, and removes the stack afterwards;
``make bench-sla`` runs through it, so no benchmark needs ``make up`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from leadbridge_devstack.kafka import KafkaBroker
from leadbridge_devstack.postgres import PostgresCluster

DURABLE = "fsync=on synchronous_commit=on full_page_writes=on (PostgreSQL's defaults)"


@contextlib.contextmanager
def durable_postgres() -> Iterator[PostgresCluster]:
    pg = PostgresCluster.throwaway(durable=True)
    assert "fsync=off" not in pg.server_options
    try:
        yield pg
    finally:
        pg.remove()


def postmaster_pid(pg: PostgresCluster) -> int:
    """The cluster's postmaster: its backends are its children (``loadgen.tree_cpu_seconds`` counts them)."""
    return int((pg.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker.throwaway()
    try:
        yield broker
    finally:
        broker.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description="run a command against a throwaway durable stack")
    parser.add_argument("--kafka", action="store_true", help="start a Kafka broker too")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(durable_postgres())
        env = {**os.environ, "DATABASE_URL": pg.url}
        if args.kafka:
            env["KAFKA_BOOTSTRAP_SERVERS"] = stack.enter_context(kafka_broker()).bootstrap_servers
        print(f"stack: durable postgres {pg.url} ({DURABLE})", flush=True)
        return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
