"""A throwaway PostgreSQL cluster (initdb + pg_ctl on loopback) from the machine's server binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .ports import wait_for_port


class MissingPostgresError(RuntimeError):
    pass


def server_bindir() -> Path:
    candidates = []
    if os.environ.get("PG_BINDIR"):  # explicit: use only this one
        candidates.append(Path(os.environ["PG_BINDIR"]))
    else:
        candidates += _discovered()
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise MissingPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`), "
        "set PG_BINDIR, or point DATABASE_URL at an existing server."
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
    extra_options: str = ""  # more `-c name=value` server options; later ones win over the defaults

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

    def start(self, log=print, timeout: float = 60.0) -> "PostgresCluster":
        bindir = server_bindir()
        prefix = self._run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [*prefix, str(bindir / "initdb"), "-D", str(pgdata), "-U", self.user, "-A", "trust",
                 "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True,
            )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.data_dir}' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=256MB " + self.extra_options
        )
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-o", options,
             "-l", str(self.data_dir / "postgres.log"), "-w", "-t", str(int(timeout)), "start"],
            check=True, capture_output=True,
        )
        wait_for_port(self.port, timeout)
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

    @classmethod
    def throwaway(cls, extra_options: str = "") -> "PostgresCluster":
        """Start a cluster with its own data in a new temporary folder, on a free port."""
        import tempfile

        from .ports import free_port

        data = Path(tempfile.mkdtemp(prefix="leadbridge-pg-"))
        return cls(data, free_port(), extra_options=extra_options).start(log=lambda *_: None)

    def remove(self) -> None:
        """Stop the cluster and delete its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def stop(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "postmaster.pid").exists():
            return
        subprocess.run(
            [*self._run_as(), str(server_bindir() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
