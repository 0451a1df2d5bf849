"""The built-in demo: inventory (package data), simulated power (snmpsim) and a local Prometheus."""

from __future__ import annotations

import subprocess


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """Stop a demo child process by its PID: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
