"""A service that may fall behind lowers its own CPU priority (``CPU_NICENESS``), every thread of it, and never
raises one. Each case runs in a process of its own: a niceness, once raised, stays for the process's life."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from leadbridge_events.priority import niceness_of
from leadbridge_events.settings import BackboneSettings
from pydantic import ValidationError

_PROBE = """
import threading, os, time
from leadbridge_events.priority import yield_cpu
ready, done = threading.Event(), threading.Event()
def other():
    ready.set(); done.wait()
t = threading.Thread(target=other); t.start(); ready.wait()
yield_cpu({niceness})
later = {{}}
t2 = threading.Thread(target=lambda: later.update(n=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
t2.start(); t2.join()
print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, t.native_id), later["n"])
done.set()
"""


def _run(niceness: int, *, started_at: int = 0) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(niceness=niceness)], capture_output=True, text=True,
                         check=True, preexec_fn=(lambda: os.nice(started_at)) if started_at else None)
    return [int(n) for n in out.stdout.split()]


def test_every_thread_and_every_later_one_runs_at_the_niceness_asked():
    base = niceness_of()
    assert _run(7) == [max(7, base)] * 3  # the calling thread, one started before, one started after


def test_a_process_started_nicer_than_asked_stays_as_nice():
    assert _run(5, started_at=12) == [max(12, niceness_of())] * 3


def test_zero_leaves_the_priority_as_it_was():
    assert _run(0) == [niceness_of()] * 3


def test_the_setting_is_checked_at_start():
    assert BackboneSettings().cpu_niceness == 0
    assert BackboneSettings(CPU_NICENESS="10").cpu_niceness == 10
    for bad in ("20", "-1", "high"):
        with pytest.raises(ValidationError, match="CPU_NICENESS"):
            BackboneSettings(CPU_NICENESS=bad)
