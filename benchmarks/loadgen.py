"""Load generators for `make bench`, each reporting its own CPU use (so it is seen not to be the bottleneck).

``wrk_post_leads`` drives intake with Debian's compiled ``wrk`` and ``lead.lua`` (a new person per request);
``CpuMeter`` reads any process's CPU time from /proc (with its worker processes), to print CPU per lead for
each service.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class WrkResult:
    accepted: int
    rejected: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_cores: float  # wrk's own CPU time / wall time

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def wrk_post_leads(url: str, api_key: str, *, seconds: float, connections: int, threads: int = 1) -> WrkResult:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian/Ubuntu: apt-get install wrk; `make bench` installs it)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "30s",
         "-s", str(HERE / "lead.lua"), f"{url}/v1/leads"],
        env={**os.environ, "LB_API_KEY": api_key}, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK "))
    r = json.loads(line[4:])
    bad = r["non_2xx"] + r["socket_errors"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(r["requests"] - bad, bad, r["seconds"], r["p50_ms"], r["p99_ms"], cpu / wall)


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of a process and (``children``) its waited-for children so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(f) for f in fields[11:15 if children else 13]) / TICKS  # utime stime cutime cstime


def descendants(pid: int) -> list[int]:
    """The live processes under ``pid`` (e.g. uvicorn's worker processes with ``INTAKE_WORKERS=2``)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of ``pid`` and of every live process under it (a worker process's CPU is not in its
    parent's ``cutime`` until it has exited)."""
    return sum(cpu_seconds(p) for p in (pid, *descendants(pid)))


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


class CpuMeter:
    """CPU seconds each of some processes used between ``start()`` and ``stop()``: with the processes under it,
    except for the names in ``alone`` (the benchmark's own process: every service, broker and cluster it
    started is under it)."""

    def __init__(self, pids: dict[str, int], alone: Collection[str] = ()) -> None:
        self.pids = pids
        self._alone = frozenset(alone)
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _seconds(self, name: str) -> float:
        pid = self.pids[name]
        return cpu_seconds(pid, children=False) if name in self._alone else tree_cpu_seconds(pid)

    def start(self) -> CpuMeter:
        self._start = {name: self._seconds(name) for name in self.pids}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {name: self._seconds(name) - self._start[name] for name in self.pids}
        return self.used
