"""free_port: a port for a server started next, outside the range the kernel hands to outgoing connections."""

from __future__ import annotations

import socket

from leadbridge_devstack.ports import _ephemeral_range, free_port


def test_free_ports_are_below_the_ephemeral_range_bindable_and_never_repeated():
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    # a port from the ephemeral range can be taken by any client connection before the server binds it
    assert all(1024 <= p < low for p in ports), ports
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", ports[0]))
