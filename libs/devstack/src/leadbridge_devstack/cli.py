"""`leadbridge-devstack up|down|env|fetch|check`: the long-lived local stack behind `make up` / `make run`."""

from __future__ import annotations

import argparse
import os
import sys

from . import prerequisites
from .kafka import KafkaBroker, MissingJavaError, fetch_jars
from .paths import state_dir
from .ports import port_open
from .postgres import MissingPostgresError, PostgresCluster

KAFKA_PORT = int(os.environ.get("LEADBRIDGE_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
PG_PORT = int(os.environ.get("LEADBRIDGE_PG_PORT", "15432"))


def broker() -> KafkaBroker:
    return KafkaBroker(state_dir() / "kafka", KAFKA_PORT, KAFKA_CONTROLLER_PORT)


def postgres() -> PostgresCluster:
    return PostgresCluster(state_dir() / "postgres", PG_PORT)


def up() -> list:
    """Start whatever is not running yet; returns what this call started (to stop it again)."""
    kafka, pg = broker(), postgres()
    started: list = []
    if port_open(pg.port):
        print(f"postgres: already listening on {pg.port}")
    else:
        started.append(pg.start())
    if port_open(kafka.port):
        print(f"kafka: already listening on {kafka.port}")
    else:
        started.append(kafka.start())
    print(env_lines())
    return started


def down() -> None:
    broker().stop()
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
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            problem = prerequisites.report(args.target)
            if problem:
                print(problem, file=sys.stderr)
                return 1
        elif args.command == "up":
            up()
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
