"""The LeadBridge services as separate processes: used by `make run`, the end-to-end tests and `make bench`.

``start_system(env, ports, replicas=2)`` starts two processes of every service (each on its own port, all in
one consumer group per service, sharing one database): the first is named after the service ("router"), the
others get "#<n>" ("router#2"); ``replica_names(2)`` lists them, to give each a port. ``System.kill(name)``
SIGKILLs one replica (its partitions move to the others), ``System.replicas("router")`` lists a service's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    default_port: int
    env_prefix: str

    @property
    def port_variable(self) -> str:
        return f"{self.env_prefix}_PORT"


SERVICES = (
    ServiceSpec("intake", "leadbridge_intake", 8001, "INTAKE"),
    ServiceSpec("scoring", "leadbridge_scoring", 8002, "SCORING"),
    ServiceSpec("router", "leadbridge_router", 8003, "ROUTER"),
    ServiceSpec("sla-watcher", "leadbridge_sla_watcher", 8004, "SLA_WATCHER"),
    ServiceSpec("insights", "leadbridge_insights", 8005, "INSIGHTS"),
    ServiceSpec("crm-sync", "leadbridge_crm_sync", 8006, "CRM_SYNC"),
)


@dataclass
class RunningService:
    spec: ServiceSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    services: dict[str, RunningService] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    def stop(self, timeout: float = 20.0) -> None:
        for svc in self.services.values():
            if svc.process.poll() is None:
                svc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for svc in self.services.values():
            try:
                svc.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                svc.process.kill()
                svc.process.wait()

    def replicas(self, service: str) -> list[RunningService]:
        return [svc for svc in self.services.values() if svc.spec.name == service]

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash: no clean shutdown, no offsets committed on the way out)."""
        svc = self.services[name]
        svc.process.kill()
        svc.process.wait()

    def alive(self) -> bool:
        return all(s.process.poll() is None for s in self.services.values())


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} not ready after {timeout}s: {last}")


def replica_name(service: str, index: int) -> str:
    """"router" for the first replica (index 0), "router#2" for the second, ..."""
    return service if index == 0 else f"{service}#{index + 1}"


def replica_names(replicas: int, only: tuple[str, ...] | None = None) -> list[str]:
    return [replica_name(spec.name, i) for spec in SERVICES if only is None or spec.name in only
            for i in range(replicas)]


def start_process(spec: ServiceSpec, name: str, port: int, env: dict[str, str],
                  log_dir: Path | None = None) -> RunningService:
    """Start one process of a service (not waiting for it to be ready)."""
    proc_env = {**os.environ, **env, spec.port_variable: str(port)}
    log_path = None
    with contextlib.ExitStack() as files:  # the parent's copy of the log file is closed once the child has its own
        out: int | IO[bytes] = subprocess.DEVNULL
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{name.replace('#', '-')}.log"
            out = files.enter_context(log_path.open("ab"))
        proc = subprocess.Popen([sys.executable, "-m", spec.module], env=proc_env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return RunningService(spec, port, proc, log_path)


def start_system(
    env: dict[str, str],
    ports: dict[str, int] | None = None,
    *,
    only: tuple[str, ...] | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = 90.0,
    replicas: int = 1,
) -> System:
    """Start ``replicas`` processes of each service as `python -m <module>` and wait until all answer /readyz.

    ``ports`` maps a process name (see ``replica_names``) to its port; unnamed ones get the service's default
    port plus 100 per replica.
    """
    system = System()
    try:
        for spec in SERVICES:
            if only is not None and spec.name not in only:
                continue
            for index in range(replicas):
                name = replica_name(spec.name, index)
                port = (ports or {}).get(name, spec.default_port + 100 * index)
                system.services[name] = start_process(spec, name, port, env, log_dir)
        for svc in system.services.values():
            wait_ready(svc.url, svc.process, ready_timeout)
    except BaseException:
        system.stop()
        raise
    return system
