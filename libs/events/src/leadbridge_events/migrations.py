"""Schema migrations (Alembic) for a service's own PostgreSQL schema.

A service keeps its revision files in ``<package>/migrations/``; the Alembic environment is shared
(``alembic_env/``) and runs on the runtime's connection, under an advisory lock so replicas starting
together migrate once. The version table is ``<schema>.alembic_version``.

``leadbridge-migrations revision SERVICE -m "what changed"`` autogenerates a revision by comparing the
service's models with a database migrated to head (``DATABASE_URL``, default: the `make up` stack).
``leadbridge-migrations check`` fails when a service's models and its migrations disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .locks import LockClass, xact_lock

ENV_DIR = Path(__file__).with_name("alembic_env")
MIGRATION_LOCK_TIMEOUT_MS = 300_000

ENTRY_POINTS = "leadbridge.migrations"  # each service registers its own: name = "package.module:MIGRATIONS"


@dataclass(frozen=True)
class Migrations:
    """A service's schema: its tables, and the package whose ``migrations/`` folder holds the revisions.

    A service registers it in its pyproject.toml, so this module names no service::

        [project.entry-points."leadbridge.migrations"]
        scoring = "leadbridge_scoring.store:MIGRATIONS"
    """

    metadata: MetaData
    package: str

    @property
    def versions(self) -> Path:
        return migrations_dir(self.package)


def registered() -> list[str]:
    """The services whose migrations are installed, by name."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINTS)})


def _config(metadata: MetaData, versions: Path, connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ENV_DIR))
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["target_metadata"] = metadata
    return cfg


async def migrate(engine: AsyncEngine, metadata: MetaData, versions: Path) -> None:
    """Bring the service's schema to the newest revision (idempotent; safe with concurrent starters)."""
    async with engine.begin() as conn:
        # a migration may wait for a replica's migration and rewrite tables: longer bounds than the pool's
        await conn.execute(text(f"SET LOCAL lock_timeout = {MIGRATION_LOCK_TIMEOUT_MS}"))
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
        await xact_lock(conn, LockClass.SCHEMA_MIGRATION, metadata.schema or "public")
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{metadata.schema}"'))
        await conn.run_sync(lambda sync: command.upgrade(_config(metadata, versions, sync), "head"))


async def differences(engine: AsyncEngine, metadata: MetaData) -> list[Any]:
    """What the models have that the migrated database has not (or the other way round)."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={
                    "include_schemas": True, "compare_type": True, "version_table_schema": metadata.schema,
                    "include_name": lambda n, t, p: n == metadata.schema if t == "schema" else True,
                }),
                metadata,
            )
        )


def load(service: str) -> tuple[MetaData, Path]:
    """A service's MetaData and migrations folder, from the entry point it registered."""
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == service]
    if not found:
        raise SystemExit(f"no service {service!r} registers migrations (known: {', '.join(registered())})")
    migrations: Migrations = found[0].load()
    return migrations.metadata, migrations.versions


def migrations_dir(package: str) -> Path:
    """``<package>/migrations/``: where a service keeps its revision files."""
    module_file = importlib.import_module(package).__file__
    if module_file is None:
        raise ValueError(f"{package} is not a regular package")
    return Path(module_file).parent / "migrations"


async def _scratch_database(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    name = f"migrations_{uuid.uuid4().hex[:8]}"
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(dsn)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return url.rpartition("/")[0] + f"/{name}", drop


async def _revision(service: str, message: str, url: str) -> None:
    metadata, versions = load(service)
    scratch, drop = await _scratch_database(url)
    engine = create_async_engine(scratch)
    try:
        await migrate(engine, metadata, versions)
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.revision(
                _config(metadata, versions, sync), message=message, autogenerate=True,
                rev_id=f"{len(list(versions.glob('[0-9]*.py'))) + 1:04d}"))
    finally:
        await engine.dispose()
        await drop()


async def _check(url: str) -> int:
    failed = 0
    for service in registered():
        metadata, versions = load(service)
        scratch, drop = await _scratch_database(url)
        engine = create_async_engine(scratch)
        try:
            await migrate(engine, metadata, versions)
            diff = await differences(engine, metadata)
        finally:
            await engine.dispose()
            await drop()
        print(f"{service}: {'up to date' if not diff else diff}")
        failed += bool(diff)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadbridge-migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate a revision for one service")
    rev.add_argument("service")
    rev.add_argument("-m", "--message", required=True)
    sub.add_parser("check", help="fail when models and migrations disagree")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL", "postgresql+asyncpg://leadbridge@127.0.0.1:15432/leadbridge")
    if args.command == "revision":
        asyncio.run(_revision(args.service, args.message, url))
        return 0
    return asyncio.run(_check(url))


if __name__ == "__main__":
    sys.exit(main())
