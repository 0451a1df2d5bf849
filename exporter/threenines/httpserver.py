"""The exporter's HTTP layer: serves pre-rendered bytes and hands POSTs to registered handlers.

It knows nothing about probes or devices. A scrape asks the service for the exposition (rendered from
in-memory state, no I/O) and writes it out in chunks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from threenines.webconfig import WebConfig

log = logging.getLogger(__name__)

PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]
Body = bytes | Sequence[bytes]
MAX_POST_BYTES = 1024 * 1024
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


class ExporterHTTPServer:
    def __init__(self, host: str, port: int, metrics: Callable[[], Body], healthy: Callable[[], tuple[bool, str]],
                 max_post_bytes: int = MAX_POST_BYTES, web: WebConfig | None = None) -> None:
        self._metrics = metrics
        self._healthy = healthy
        self._posts: dict[str, PostHandler] = {}
        self._own_auth: set[str] = set()
        self._max_post_bytes = max_post_bytes
        self._web = web or WebConfig()
        handler = self._handler_class()
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:  # say which address, and what to change: the errno alone names neither
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(err.errno, f"cannot listen on {where}: {err.strerror} (set exporter.listen or "
                          "--listen to a free address)") from err
        self._server.daemon_threads = True
        if self._web.tls is not None:
            # The handshake happens on the handler thread's first read: a slow client never blocks accept().
            self._server.socket = self._web.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
        # The accept loop wakes only for connections: stop() wakes it itself. serve_forever's default
        # 0.5 s poll cost 0.3 ms of CPU a second on the benchmark VM, more than 2 µs per probe at 167 probes/s.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 3600},
                                        name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def add_post(self, path: str, handler: PostHandler, own_auth: bool = False) -> None:
        """own_auth: the handler authenticates itself (the audit webhook's bearer token), not basic auth."""
        self._posts[path] = handler
        if own_auth:
            self._own_auth.add(path)

    @property
    def scheme(self) -> str:
        return "https" if self._web.tls is not None else "http"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            stopper = threading.Thread(target=self._server.shutdown, name="http-stop", daemon=True)
            stopper.start()
            # A shut-down listening socket is readable for good: the accept loop wakes at once, and keeps
            # waking until it sees shutdown()'s request, however the two threads interleave.
            with contextlib.suppress(OSError):
                self._server.socket.shutdown(socket.SHUT_RDWR)
            stopper.join(timeout=5)
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "threenines"
            protocol_version = "HTTP/1.1"
            timeout = 30  # a client that stalls (or never finishes a TLS handshake) frees its thread

            def _authorized(self, path: str) -> bool:
                if path in outer._own_auth or outer._web.authorized(self.headers.get("Authorization")):
                    return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="threenines"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if not self._authorized(path):
                    return
                if path == "/metrics":
                    self._reply(200, outer._metrics(), CONTENT_TYPE_METRICS)
                elif path == "/healthz":
                    ok, detail = outer._healthy()
                    self._reply(200 if ok else 503, (detail + "\n").encode())
                elif path == "/":
                    body = b"<html><body><h1>threenines</h1><p><a href='/metrics'>/metrics</a> " \
                           b"<a href='/healthz'>/healthz</a></p></body></html>"
                    self._reply(200, body, "text/html; charset=utf-8")
                else:
                    self._reply(404, b"not found\n")

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if not self._authorized(path):
                    return
                handler = outer._posts.get(path)
                if handler is None:
                    self._reply(404, b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    self._reply(400, b"bad Content-Length\n")
                    return
                if length > outer._max_post_bytes:
                    self.close_connection = True
                    self._reply(413, f"body larger than {outer._max_post_bytes} bytes\n".encode())
                    return
                body = self.rfile.read(length) if length > 0 else b""
                try:
                    status, reply = handler(body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:
                    log.exception("handler for POST %s failed", path)
                    status, reply = 500, b"internal error\n"
                self._reply(status, reply)

            def _reply(self, status: int, body: Body, content_type: str = "text/plain; charset=utf-8") -> None:
                # A large exposition comes in chunks (one per metric family): written one after the
                # other, never concatenated into one more copy of tens of megabytes.
                parts = (body,) if isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(sum(len(part) for part in parts)))
                self.end_headers()
                for part in parts:
                    self.wfile.write(part)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s %s", self.address_string(), format % args)

        return Handler
