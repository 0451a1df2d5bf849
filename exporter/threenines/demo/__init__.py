"""The built-in demo: inventory (package data), simulated power (snmpsim), a port that can be cut (nftables)
and a local Prometheus."""

from __future__ import annotations

import contextlib
import socket
import subprocess


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """Stop a demo child process by its PID: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_ports(kind: int, count: int) -> list[int]:
    """count distinct ports free on 127.0.0.1 now (kind: socket.SOCK_STREAM or SOCK_DGRAM).

    All sockets stay bound until every port is picked, so the kernel cannot hand out the same port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, kind)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
