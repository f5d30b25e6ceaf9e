"""Loopback port helpers."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

_HANDED_OUT: set[int] = set()  # never the same port twice from one process


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # what a server binds (uvicorn's 0.0.0.0), so free on every address
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, for a server started next, chosen BELOW the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` is in the ephemeral range, which it also hands to outgoing
    connections: between choosing it and the server binding it, a client connection (a Kafka client opens
    many) could take it ("address already in use", seen in the replica tests). Below the range only servers
    bind, and this process never hands out the same port twice.
    """
    low, _ = _ephemeral_range()
    first = max(1024, low - 12000)
    for _ in range(200):
        port = random.randrange(first, low)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if not alive():
            raise RuntimeError(f"process exited before listening on {port}")
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
