"""`leadbridge-devstack down` stops the broker it started, and nothing else."""

from __future__ import annotations

import subprocess
import sys

from leadbridge_devstack.kafka import KafkaBroker


def test_a_stale_pid_file_does_not_kill_an_unrelated_process(tmp_path):
    # the broker died (or the machine rebooted) and its pid now belongs to some other program
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        broker = KafkaBroker(tmp_path, port=1, controller_port=2)
        broker.pid_file.write_text(str(other.pid))
        broker.stop(timeout=1.0)
        assert other.poll() is None, "stop() killed a process that is not the broker"
        assert not broker.pid_file.exists(), "the stale pid file is cleaned up"
    finally:
        other.kill()
        other.wait()
