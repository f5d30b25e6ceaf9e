"""The LeadBridge services as separate processes: used by `make run`, the end-to-end tests and `make bench`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


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
    process: subprocess.Popen
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

    def alive(self) -> bool:
        return all(s.process.poll() is None for s in self.services.values())


def wait_ready(url: str, process: subprocess.Popen, timeout: float, path: str = "/readyz") -> None:
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


def start_system(
    env: dict[str, str],
    ports: dict[str, int] | None = None,
    *,
    only: tuple[str, ...] | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = 90.0,
) -> System:
    """Start each service as `python -m <module>` and wait until every one answers /readyz."""
    system = System()
    try:
        for spec in SERVICES:
            if only is not None and spec.name not in only:
                continue
            port = (ports or {}).get(spec.name, spec.default_port)
            proc_env = {**os.environ, **env, spec.port_variable: str(port)}
            out = subprocess.DEVNULL
            log_path = None
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                log_path = log_dir / f"{spec.name}.log"
                out = log_path.open("ab")
            proc = subprocess.Popen([sys.executable, "-m", spec.module], env=proc_env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            system.services[spec.name] = RunningService(spec, port, proc, log_path)
        for svc in system.services.values():
            wait_ready(svc.url, svc.process, ready_timeout)
    except BaseException:
        system.stop()
        raise
    return system
