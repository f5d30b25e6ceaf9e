"""`leadbridge-devstack up|down|env|fetch|check`: the long-lived local stack behind `make up` / `make run`.

`up --brokers 3` (`make up BROKERS=3`) starts a three-broker KRaft cluster instead of the one broker, on
ports 19092, 19094, 19096 (controllers one above each); topics then get replication factor 3 and
min.insync.replicas 2. The broker count is remembered in .devstack/kafka-brokers, so `env`, `make run` and
`down` find the same cluster; LEADBRIDGE_KAFKA_BROKERS overrides it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Protocol

from . import prerequisites
from .cluster import KafkaCluster
from .kafka import MissingJavaError, fetch_jars
from .paths import state_dir
from .ports import port_open
from .postgres import MissingPostgresError, PostgresCluster

KAFKA_PORT = int(os.environ.get("LEADBRIDGE_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
PG_PORT = int(os.environ.get("LEADBRIDGE_PG_PORT", "15432"))


def _brokers_file() -> Path:
    return state_dir() / "kafka-brokers"


def broker_count() -> int:
    """The broker count asked for (LEADBRIDGE_KAFKA_BROKERS), else the one `up` last started, else 1."""
    if os.environ.get("LEADBRIDGE_KAFKA_BROKERS"):
        return int(os.environ["LEADBRIDGE_KAFKA_BROKERS"])
    stored = _brokers_file()
    return int(stored.read_text()) if stored.exists() else 1


def broker(brokers: int | None = None) -> KafkaCluster:
    """The `make up` Kafka: one broker in .devstack/kafka, or a cluster in .devstack/kafka-<n>brokers."""
    n = brokers or broker_count()
    folder = state_dir() / ("kafka" if n == 1 else f"kafka-{n}brokers")
    return KafkaCluster(folder, n, ports=[KAFKA_PORT + 2 * i for i in range(n)],
                        controller_ports=[KAFKA_CONTROLLER_PORT + 2 * i for i in range(n)])


def postgres() -> PostgresCluster:
    return PostgresCluster(state_dir() / "postgres", PG_PORT)


class Stoppable(Protocol):
    def stop(self) -> None: ...


def up(brokers: int | None = None) -> list[Stoppable]:
    """Start whatever is not running yet; returns what this call started (to stop it again)."""
    kafka, pg = broker(brokers), postgres()
    started: list[Stoppable] = []
    if port_open(pg.port):
        print(f"postgres: already listening on {pg.port}")
    else:
        started.append(pg.start())
    first = kafka.nodes[0].port
    if port_open(first):
        print(f"kafka: already listening on {first}")
    else:
        started.append(kafka.start())
    _brokers_file().write_text(str(kafka.brokers))
    print(env_lines())
    return started


def down() -> None:
    for n in sorted({1, broker_count()}):
        broker(n).stop()
    _brokers_file().unlink(missing_ok=True)
    postgres().stop()
    print("stopped kafka and postgres")


def env_lines() -> str:
    return (
        f"export KAFKA_BOOTSTRAP_SERVERS={broker().bootstrap_servers}\n"
        f"export DATABASE_URL={postgres().url}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadbridge-devstack")
    parser.add_argument("command", choices=["up", "down", "env", "fetch", "check"])
    parser.add_argument("--for", dest="target", choices=sorted(prerequisites.CHECKS), default="test",
                        help="check: which make target's prerequisites to check")
    parser.add_argument("--brokers", type=int, default=None,
                        help="Kafka brokers for `up` (default 1; 3 for a KRaft cluster with replication factor 3)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            problem = prerequisites.report(args.target)
            if problem:
                print(problem, file=sys.stderr)
                return 1
        elif args.command == "up":
            up(args.brokers)
        elif args.command == "down":
            down()
        elif args.command == "env":
            print(env_lines())
        else:
            print(fetch_jars())
    except (MissingJavaError, MissingPostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
