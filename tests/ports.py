"""Free loopback ports for servers a test starts on a fixed port (most bind port 0 and read it back instead)."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now.

    The sockets stay bound until all are chosen, so the kernel cannot hand the same port out twice (asking
    one at a time, it may: a port is free again the moment its probe socket closes).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]
