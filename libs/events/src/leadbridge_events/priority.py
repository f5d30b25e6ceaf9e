"""A service that may fall behind (a read model) yields the cores to the ones that must not (``CPU_NICENESS``).

Where the services share a machine's cores -- ``make run``, one VM, the benchmarks' two cores -- a backlog makes
every one of them busy at once, and the kernel shares the cores out evenly: the managers' read model (insights)
took as much CPU as scoring or the router, while the leads it was projecting still waited to be routed. A
service started with ``CPU_NICENESS=10`` (insights' default: ``INSIGHTS_CPU_NICENESS``) lowers its own
scheduling priority to that niceness: with cores to spare it runs as before; while they are all busy it runs
after the routing path and catches up once the backlog is routed (``make bench`` prints how far behind it was
and how long it took). Lowering a priority needs no privileges, raising one does: a process started nicer
than asked stays so. In Kubernetes each pod has a cgroup of its own and its CPU request decides instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

__all__ = ["niceness_of", "yield_cpu"]

log = logging.getLogger("leadbridge.priority")

_TASKS = Path("/proc/self/task")


def yield_cpu(niceness: int) -> None:
    """Every thread of this process at ``niceness`` at least (Linux sets it per thread; threads started later
    inherit their creator's). 0, or a platform without priorities: nothing."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    threads = [int(t.name) for t in _TASKS.iterdir()] if _TASKS.is_dir() else [0]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
    log.info("running at a lower CPU priority", extra={"niceness": niceness_of()})


def niceness_of(pid: int = 0) -> int:
    """A process's niceness (0: this one)."""
    return os.getpriority(os.PRIO_PROCESS, pid)
