"""The exporter's HTTP layer: serves pre-rendered bytes and hands POSTs to registered handlers.

It knows nothing about probes or devices. A scrape asks the service for the exposition (rendered from
in-memory state, no I/O) and writes it out in chunks.

Requests are framed only by Content-Length, as net/http would read them: a request whose framing another HTTP
parser (a proxy in front) could read differently is refused and its connection closed, so no bytes of it are
ever read as a second request — any Transfer-Encoding (501), two Content-Lengths or one that is not plain
digits (400), a header line that is folded, has no name, or holds control characters (400). A reply that
leaves body bytes unread closes the connection for the same reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from threenines.config.webconfig import Verdict, WebConfig

log = logging.getLogger(__name__)

PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]
Body = bytes | Sequence[bytes]
MAX_POST_BYTES = 1024 * 1024
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
_DIGITS_RE = re.compile(r"[0-9]{1,18}")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # in a field value; HTAB is allowed
_IOV_MAX = 1024  # Linux's UIO_MAXIOV
_JOIN_BYTES = 4 * 1024 * 1024


def framing_problem(headers: Message) -> tuple[int, str] | None:
    """Why a request's head cannot be trusted to frame its body, as (status, reason), or None when it can."""
    if headers.defects or headers.get_payload():  # a line the parser could not read as a header, and after
        return 400, "malformed header line"
    for name, value in headers.items():
        if not _TOKEN_RE.fullmatch(name):
            return 400, "invalid header name"
        if _CONTROL_RE.search(value):  # also a folded (obs-fold) value: it keeps its line break
            return 400, "folded header or control character in a header value"
    if "Transfer-Encoding" in headers:
        return 501, "Transfer-Encoding is not supported: send Content-Length"
    lengths = headers.get_all("Content-Length") or []
    if len(lengths) > 1:
        return 400, "more than one Content-Length"
    if lengths and not _DIGITS_RE.fullmatch(lengths[0].strip(" \t")):
        return 400, "Content-Length is not a number of bytes"
    return None


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 §12.5.3) accepts gzip: named (or `*`) with a q above 0."""
    if not header:
        return False
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.lower()] = weight
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0
    return False


def send_parts(sock: socket.socket, parts: Sequence[bytes]) -> None:
    """Write `parts` in order with as few system calls as the kernel allows: sendmsg gathers up to IOV_MAX
    buffers a call, so an exposition in thousands of pieces is neither one write each nor one more copy."""
    if isinstance(sock, ssl.SSLSocket):  # no sendmsg on TLS: the record layer copies anyway
        for part in parts:
            sock.sendall(part)
        return
    if sum(len(part) for part in parts) <= _JOIN_BYTES:  # a gzip reply: one copy costs less than a view a part
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(part) for part in parts if part]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first:first + _IOV_MAX])
        while sent and first < len(views):
            size = len(views[first])
            if sent >= size:
                sent -= size
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0


def listen_backlog() -> int:
    """The kernel's accept-queue limit, as Go's net.Listen uses it (the standard library's default is 5)."""
    try:
        return max(1, min(int(Path("/proc/sys/net/core/somaxconn").read_text()), 65535))
    except (OSError, ValueError):
        return socket.SOMAXCONN


def _bind_address(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """The address family and socket address to bind: an IPv4 or IPv6 literal, or a name (localhost) resolved,
    IPv4 first as Go's net.Listen does. socket.gaierror (an OSError) when the name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = next((info for info in infos if info[0] == socket.AF_INET), infos[0])
    return family, sockaddr


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = listen_backlog()

    def __init__(self, family: int, address: tuple[Any, ...], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = family
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that goes away (reset, TLS handshake refused, timeout) is routine; anything else is a bug to
        # see with its traceback, never a crash of the server (socketserver would print it to stderr).
        err = sys.exc_info()[1]
        if isinstance(err, OSError):  # ConnectionError, TimeoutError, ssl.SSLError: the client's doing
            log.debug("http connection from %s ended: %s", client_address, type(err).__name__)
        else:
            log.error("http request from %s failed", client_address, exc_info=err)


class ExporterHTTPServer:
    def __init__(self, host: str, port: int, metrics: Callable[[], Body], healthy: Callable[[], tuple[bool, str]],
                 max_post_bytes: int = MAX_POST_BYTES, web: WebConfig | None = None,
                 gzip_metrics: Callable[[], Body] | None = None) -> None:
        """gzip_metrics: the exposition as gzip members, served (Content-Encoding: gzip) to a client that
        accepts gzip, as Prometheus does by default: a tenth of the bytes on the wire, and of the kernel's copying
        on the exporter's side."""
        self._metrics = metrics
        self._gzip_metrics = gzip_metrics
        self._healthy = healthy
        self._posts: dict[str, PostHandler] = {}
        self._own_auth: set[str] = set()
        self._max_post_bytes = max_post_bytes
        self._web = web or WebConfig()
        handler = self._handler_class()
        try:
            self._server = _Server(*_bind_address(host, port), handler)
        except OSError as err:  # say which address, and what to change: the errno alone names neither
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(err.errno, f"cannot listen on {where}: {err.strerror} (set exporter.listen or "
                          "--listen to a free address)") from err
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
            _unread = 0  # body bytes of this request not read yet

            def version_string(self) -> str:
                return self.server_version  # not the Python version

            def send_response(self, code: int, message: str | None = None) -> None:
                # Every reply has a status line and headers: the standard library answers a request line it
                # reads as HTTP/0.9 (no version, "HTTP/0.9", or too broken to say) with a bare body.
                if self.request_version == "HTTP/0.9":
                    self.request_version = "HTTP/1.0"
                super().send_response(code, message)

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                if not re.fullmatch(r"HTTP/1\.[0-9]", self.request_version) or len(self.requestline.split()) != 3:
                    self.send_error(505, "only HTTP/1.x is served")  # HTTP/0.9: no headers to frame a request
                    return False
                problem = framing_problem(self.headers)
                if problem is not None:
                    self.send_error(*problem)  # with Connection: close: nothing after this head is read
                    return False
                self._unread = int(self.headers.get("Content-Length", "0").strip(" \t"))
                return True

            def _authorized(self, path: str) -> bool:
                if path in outer._own_auth:
                    return True
                client = str(self.client_address[0])
                verdict = outer._web.check(self.headers.get("Authorization"), client)
                if verdict is Verdict.ALLOWED:
                    return True
                if verdict is Verdict.THROTTLED:
                    self.close_connection = True
                    self._head(429, {"Retry-After": str(outer._web.guard.retry_after(client))})
                else:
                    self._head(401, {"WWW-Authenticate": 'Basic realm="threenines"'})
                return False

            def _head(self, status: int, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self._framing_headers(0)

            def _framing_headers(self, length: int) -> None:
                self.send_header("Content-Length", str(length))
                if self._unread or self.close_connection:  # unread body bytes must never be read as a request
                    self.send_header("Connection", "close")
                self.end_headers()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if not self._authorized(path):
                    return
                if path == "/metrics":
                    gzip = outer._gzip_metrics is not None and accepts_gzip(self.headers.get("Accept-Encoding"))
                    try:
                        body = outer._gzip_metrics() if gzip and outer._gzip_metrics else outer._metrics()
                    except Exception:
                        log.exception("rendering /metrics failed")
                        self._reply(500, b"internal error\n")
                        return
                    encoding = {"Content-Encoding": "gzip"} if gzip else {}
                    vary = {"Vary": "Accept-Encoding"} if outer._gzip_metrics is not None else {}
                    self._reply(200, body, CONTENT_TYPE_METRICS, {**encoding, **vary})
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
                length = self._unread
                if length > outer._max_post_bytes:
                    self._reply(413, f"body larger than {outer._max_post_bytes} bytes\n".encode())
                    return
                body = self.rfile.read(length) if length > 0 else b""
                self._unread = 0
                if len(body) < length:  # the client closed before sending the body it announced
                    self.close_connection = True
                    return
                try:
                    status, reply = handler(body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:
                    log.exception("handler for POST %s failed", path)
                    status, reply = 500, b"internal error\n"
                self._reply(status, reply)

            def _reply(self, status: int, body: Body, content_type: str = "text/plain; charset=utf-8",
                       headers: Mapping[str, str] | None = None) -> None:
                # A large exposition comes in pieces (exposition/contract.py): gathered by the kernel, never
                # concatenated into one more copy of tens of megabytes.
                parts = (body,) if isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self._framing_headers(sum(len(part) for part in parts))
                self.wfile.flush()
                send_parts(self.connection, parts)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s %s", self.address_string(), format % args)

        return Handler
