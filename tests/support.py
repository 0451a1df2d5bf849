"""Test support shared by every area: free ports, real processes started and stopped by PID, readiness waits.

Every loop here is bounded in count and time; every process started is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now (TCP by default, UDP with kind=socket.SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll predicate until it returns a truthy value; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # the predicate's failures are retried until the deadline
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_error!r}" if last_error else ""))


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_post(url: str, body: bytes = b"", timeout: float = 5.0, headers: dict[str, str] | None = None
              ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class RunningProcess:
    """A real process started by a test; stopped by PID (SIGTERM, then SIGKILL) in stop()."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.argv[0]} exited early:\n{self.log()[-3000:]}")
            return http_get(url, timeout=2)[0] == 200

        try:
            wait_until(ready, timeout, what=f"{url} to answer 200")
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- log of {self.argv[0]} ---\n{self.log()[-3000:]}") from None


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], address: str = "127.0.0.1",
            poll_interval: float = 0.5) -> Iterator[ThreadingHTTPServer]:
    """`handler` on a free port of `address`, answered from a thread; shut down and joined (5 s) after."""
    server = ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def running(argv: list[str], log_path: Path, ready_url: str | None = None, timeout: float = 30.0,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[RunningProcess]:
    """Start a process, optionally wait for an HTTP URL to answer 200, and always stop it by PID."""
    process = RunningProcess(argv, log_path, env=env, cwd=cwd)
    try:
        if ready_url:
            process.wait_http(ready_url, timeout)
        yield process
    finally:
        process.stop()
