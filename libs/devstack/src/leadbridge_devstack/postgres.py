"""A local PostgreSQL cluster (initdb + pg_ctl on loopback) from the machine's server binaries.

Durable by default: ``fsync``, ``synchronous_commit`` and ``full_page_writes`` stay on, so a COMMIT (and so
intake's 202 and a consumer's offset commit) means the write is on disk and survives ``kill -9`` of the
server or a power cut. ``make run``, ``make up`` and ``make chaos`` use that. ``durable=False`` turns all
three off for speed; only the test suite's shared throwaway cluster uses it, and no test on that cluster
depends on surviving a crash of it (tests that crash PostgreSQL start their own, durable cluster).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import pypi_runtimes
from .ports import wait_for_port
from .progress import Log


class MissingPostgresError(RuntimeError):
    pass


def server_bindir() -> Path:
    candidates = []
    if os.environ.get("PG_BINDIR"):  # explicit: use only this one
        candidates.append(Path(os.environ["PG_BINDIR"]))
    elif pypi_runtimes.preferred():
        candidates += [p for p in [pypi_runtimes.postgres_bindir()] if p]
    else:
        candidates += _discovered()
        candidates += [p for p in [pypi_runtimes.postgres_bindir()] if p]  # from PyPI (pgserver), last
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise MissingPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`), "
        "run `make install` (which installs PostgreSQL from PyPI, pgserver), set PG_BINDIR, "
        "or point DATABASE_URL at an existing server."
    )


def _discovered() -> list[Path]:
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/opt/homebrew/opt/postgresql*/bin"), reverse=True)]
    return candidates


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int
    user: str = "leadbridge"
    database: str = "leadbridge"
    durable: bool = True

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self) -> list[str]:
        """initdb refuses root: run the server as the unprivileged `postgres` user when we are root."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        return ["runuser", "-u", "postgres", "--"]

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, log: Log = print, timeout: float = 60.0) -> PostgresCluster:
        bindir = server_bindir()
        prefix = self._run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [*prefix, str(bindir / "initdb"), "-D", str(pgdata), "-U", self.user, "-A", "trust",
                 "-E", "UTF8", *([] if self.durable else ["--no-sync"])],
                check=True, capture_output=True,
            )
        self._pg_ctl_start(timeout)
        subprocess.run(
            [*prefix, str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"],
            check=True, capture_output=True, text=True,
        ).stdout.strip() == "1" or subprocess.run(
            [*prefix, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             self.database],
            check=True, capture_output=True,
        )
        log(f"postgres: {self.url} (data in {pgdata})")
        return self

    @property
    def server_options(self) -> str:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.data_dir}' "
                   "-c max_connections=300 -c shared_buffers=256MB")
        if not self.durable:  # fast and crash-unsafe: a COMMIT returns before its WAL is on disk
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        return options

    def _pg_ctl_start(self, timeout: float = 60.0) -> None:
        subprocess.run(
            [*self._run_as(), str(server_bindir() / "pg_ctl"), "-D", str(self.data_dir / "pgdata"),
             "-o", self.server_options, "-l", str(self.data_dir / "postgres.log"), "-w", "-t", str(int(timeout)),
             "start"],
            check=True, capture_output=True,
        )
        wait_for_port(self.port, timeout)

    @classmethod
    def throwaway(cls, *, durable: bool = True) -> PostgresCluster:
        """Start a cluster with its own data in a new temporary folder, on a free port."""
        import tempfile

        from .ports import free_port

        data = Path(tempfile.mkdtemp(prefix="leadbridge-pg-"))
        return cls(data, free_port(), durable=durable).start(log=lambda *_: None)

    def remove(self) -> None:
        """Stop the cluster and delete its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean), or ``immediate`` (as a crash: recovery replays the WAL on start)."""
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "postmaster.pid").exists():
            return
        subprocess.run(
            [*self._run_as(), str(server_bindir() / "pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "stop"],
            capture_output=True,
        )

    def restart(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop (``fast`` or ``immediate``) and start again on the same data and port."""
        self.stop(mode)
        self._pg_ctl_start(timeout)
