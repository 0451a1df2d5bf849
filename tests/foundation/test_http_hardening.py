"""The exporter's HTTP layer under hostile clients (issue 22): requests whose framing a proxy could read differently
are refused and their connection closed (nothing is smuggled), the listen backlog is the kernel's, and a flood of
wrong Basic-auth passwords costs neither bcrypt time nor good scrapes. Raw sockets on 127.0.0.1 against a real
`threenines serve`; the auth cache and the limiter also in-process, with bcrypt calls counted."""

from __future__ import annotations

import base64
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.foundation.exporter_process import inventory_text, serve
from tests.support import VENV_BIN, free_port, running, wait_until
from threenines.config import webconfig
from threenines.config.webconfig import WebConfig
from threenines.serve.httpserver import ExporterHTTPServer, listen_backlog

SMUGGLED = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


def exchange(port: int, data: bytes, source: str | None = None, timeout: float = 10.0) -> bytes:
    """Send data on one connection, half-close it, and read until the server closes (bounded by timeout)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # the server refused early and closed: read its reply
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sum(map(len, chunks)) < 4 << 20:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(reply: bytes) -> list[int]:
    """The status of every response on the connection, in order (bodies skipped by their Content-Length)."""
    found, at = [], 0
    for _ in range(100):
        match = STATUS_RE.match(reply, at)
        if match is None:
            break
        head_end = reply.find(b"\r\n\r\n", at)
        length = re.search(rb"\r\nContent-Length: *(\d+)", reply[at:head_end], re.IGNORECASE)
        found.append(int(match[1]))
        at = head_end + 4 + (int(length[1]) if length else 0)
    return found


def head(reply: bytes) -> str:
    return reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real `threenines serve` (no audit token: the webhook takes unauthenticated posts) for the raw cases."""
    tmp_path = tmp_path_factory.mktemp("http-hardening")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.65.1"}))
    proc, port = serve(tmp_path, config)
    with proc as process:
        yield port
        assert "Traceback" not in process.log()


# -- framing: nothing is read as a second request -------------------------------------------------------------


def test_a_chunked_request_is_refused_and_what_follows_is_never_answered(exporter: int) -> None:
    # TE.CL: a Transfer-Encoding-aware proxy forwards one POST whose chunked body holds a GET; a server that
    # reads Content-Length: 4 answers that GET as a second request (it did: 400 then 200 with the metrics).
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    reply = exchange(exporter, b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
    assert statuses(reply) == [501]
    assert "Connection: close" in head(reply) and b"threenines_" not in reply


def test_chunked_alone_is_refused_too(exporter: int) -> None:
    reply = exchange(exporter, b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n0\r\n\r\n" + SMUGGLED)
    assert statuses(reply) == [501]  # was: the POST with an empty body, then 400 for the line "0"


def test_two_content_lengths_are_refused(exporter: int) -> None:
    reply = exchange(exporter, b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
    assert statuses(reply) == [400]  # was: the first one used, then the GET answered
    assert "Connection: close" in head(reply)


@pytest.mark.parametrize("length", [b"-1", b"+%d" % len(SMUGGLED), b"3_4", b"0x22", b"34 34", b"", b"\xb3\xb4"])
def test_a_content_length_that_is_not_plain_digits_is_refused(exporter: int, length: bytes) -> None:
    reply = exchange(exporter, b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                     + b"\r\n\r\n" + SMUGGLED)
    assert statuses(reply) == [400]  # was: -1 read no body and answered the GET; +34 and 3_4 were 34
    assert head(reply).startswith("HTTP/1.1 400 Content-Length is not a number of bytes\r\n")


@pytest.mark.parametrize(("header", "reason"), [
    # a line the parser could not read as a header hid every header after it (here Content-Length)
    (b"Transfer-Encoding : chunked", "malformed header line"),
    (b"Transfer-Encoding\x0b: chunked", "malformed header line"),
    (b"X-Pad: a\r\n Transfer-Encoding: chunked", "folded header or control character in a header value"),
    (b"X-Bad: a\x00b", "folded header or control character in a header value"),
    (b"X(1): y", "invalid header name"),
])
def test_a_header_line_another_parser_could_read_differently_is_refused(exporter: int, header: bytes,
                                                                        reason: str) -> None:
    reply = exchange(exporter, b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\n" + header
                     + b"\r\nContent-Length: 4\r\n\r\n" + b"%x\r\n" % len(SMUGGLED) + SMUGGLED)
    assert statuses(reply) == [400] and head(reply).startswith(f"HTTP/1.1 400 {reason}\r\n")


def test_a_body_the_handler_does_not_read_is_never_read_as_a_request(exporter: int) -> None:
    reply = exchange(exporter, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
                     + SMUGGLED)
    assert statuses(reply) == [200]  # was: 200 for /healthz, then 200 for the GET /metrics in its body
    assert "Connection: close" in head(reply)
    reply = exchange(exporter, b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
                     + SMUGGLED)
    assert statuses(reply) == [404]


@pytest.mark.parametrize("request_line", [b"GET /metrics", b"GET /metrics HTTP/0.9", b"X /metrics HTTP/0.9"])
def test_an_http_0_9_request_gets_a_status_line(exporter: int, request_line: bytes) -> None:
    reply = exchange(exporter, request_line + b"\r\n\r\n")
    assert statuses(reply) == [505]  # was: the metrics or an error page with no status line


def test_keep_alive_still_serves_requests_one_after_the_other(exporter: int) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert statuses(exchange(exporter, one * 3)) == [200, 200, 200]
    post = b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    assert statuses(exchange(exporter, post + one)) == [400, 200]


def test_the_listen_backlog_is_the_kernels_not_5(exporter: int) -> None:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{exporter}"], capture_output=True, text=True, timeout=10,
                         check=True).stdout.split()
    assert listen_backlog() == min(int(Path("/proc/sys/net/core/somaxconn").read_text()), 65535)
    assert int(out[2]) == listen_backlog() >= 128  # Send-Q of a listening socket is its backlog; was 5


# -- basic auth: verified credentials are cached, failures are rate limited ---------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("checkpw", "hashpw"):
        real = getattr(bcrypt, name)

        def counted(*args: object, _real=real, _name=name) -> object:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(webconfig.bcrypt, name, counted)
    return calls


HASH = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(rounds=4))
GOOD_HEALTHZ = b"GET /healthz HTTP/1.1\r\nAuthorization: %s\r\nConnection: close\r\n\r\n" % basic(
    "u", "scrape-me").encode()


def test_a_second_good_request_costs_no_bcrypt(bcrypt_calls: list[str]) -> None:
    web = WebConfig(users={"prometheus": HASH})
    assert web.authorized(basic("prometheus", "scrape-me"))
    assert len(bcrypt_calls) == 1
    for _ in range(5):
        assert web.authorized(basic("prometheus", "scrape-me"))
    assert len(bcrypt_calls) == 1  # was: one bcrypt per request
    assert not web.authorized(basic("prometheus", "scrape-me!"))  # a cached password is that password only
    assert not web.authorized(basic("nobody", "scrape-me"))
    assert len(bcrypt_calls) == 3


def test_the_same_wrong_password_costs_one_bcrypt(bcrypt_calls: list[str]) -> None:
    web = WebConfig(users={"prometheus": HASH})
    for _ in range(20):  # a scraper configured with a wrong password, every 15 s
        assert not web.authorized(basic("prometheus", "typo"), "127.0.0.9")
    assert len(bcrypt_calls) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_wrong_passwords_is_throttled_without_bcrypt(bcrypt_calls: list[str]) -> None:
    clock = Clock()
    web = WebConfig(users={"prometheus": HASH}, guard=webconfig.AuthGuard(clock=clock))
    Verdict = webconfig.Verdict
    assert web.check(basic("prometheus", "scrape-me"), "127.0.0.1") is Verdict.ALLOWED
    verdicts = [web.check(basic("prometheus", f"guess-{i}"), "127.0.0.2") for i in range(200)]
    burst = webconfig.AuthGuard.BURST
    assert verdicts[:burst] == [Verdict.DENIED] * burst
    assert set(verdicts[burst:]) == {Verdict.THROTTLED}
    assert len(bcrypt_calls) == 1 + burst  # 200 guesses, 10 bcrypts
    # a good scrape from the flooding address is still served (its password is cached), and the good password
    # not cached yet from a throttled address waits its turn; other addresses are not affected
    assert web.check(basic("prometheus", "scrape-me"), "127.0.0.2") is Verdict.ALLOWED
    assert web.check(basic("nobody", "x"), "127.0.0.3") is Verdict.DENIED
    assert web.guard.retry_after("127.0.0.2") == 1
    clock.now += 1  # one token back per second
    assert web.check(basic("prometheus", "guess-x"), "127.0.0.2") is Verdict.DENIED
    assert web.check(basic("prometheus", "guess-y"), "127.0.0.2") is Verdict.THROTTLED
    # IPv6 clients share a bucket per /64, IPv4-mapped addresses are their IPv4 address
    for i in range(burst):
        web.check(basic("prometheus", f"v6-{i}"), f"2001:db8::{i + 1}")
    assert web.check(basic("prometheus", "v6-x"), "2001:db8::ffff") is Verdict.THROTTLED
    assert web.check(basic("prometheus", "v4"), "::ffff:127.0.0.2") is Verdict.THROTTLED


def test_a_password_longer_than_72_bytes_is_denied_not_a_crash() -> None:
    web = WebConfig(users={"prometheus": HASH})
    assert not web.authorized(basic("prometheus", "x" * 100))  # was: ValueError from bcrypt 5 in the handler


def test_a_malformed_hash_in_the_web_config_is_refused_at_load(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: $2b$10$tooshort\n")
    with pytest.raises(webconfig.ConfigError, match=r"web.yml:2 basic_auth_users.prometheus: is not a whole "
                                                    r"bcrypt hash"):
        webconfig.load_web_config(web)  # was: accepted, then "Invalid salt" at every request


def test_good_scrapes_keep_working_during_a_flood_of_wrong_passwords(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.65.2"}))
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp_path / "state"), "--web.config.file", str(web)]
    good = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n\r\n" % basic(
        "prometheus", "scrape-me").encode()

    def bad(i: int) -> bytes:
        return b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n\r\n" % basic(
            "prometheus", f"wrong-{i}").encode()

    flood: list[int] = []

    def flooder(source: str, offset: int) -> None:
        for i in range(offset, offset + 60):  # bounded: 60 wrong passwords a thread
            flood.extend(statuses(exchange(port, bad(i), source=source)) or [0])

    with running(argv, tmp_path / "exporter.log") as exporter:
        wait_until(lambda: statuses(exchange(port, good)) == [200], 30, what="the first good scrape")
        threads = [threading.Thread(target=flooder, args=(source, n * 1000), daemon=True)
                   for n, source in enumerate(("127.0.0.2", "127.0.0.2", "127.0.0.1", "127.0.0.3"))]
        for thread in threads:
            thread.start()
        scrapes = []
        deadline = time.monotonic() + 120
        while any(t.is_alive() for t in threads) and len(scrapes) < 500 and time.monotonic() < deadline:
            scrapes.append(statuses(exchange(port, good)))
        for thread in threads:
            thread.join(timeout=120)
        assert len(flood) == 240 and scrapes and all(s == [200] for s in scrapes)
        assert set(flood) <= {401, 429} and flood.count(429) > 0  # was: 401 each, a bcrypt each
        assert "scrape-me" not in exporter.log() and "wrong-" not in exporter.log()


# -- fuzz: whatever arrives, a status line or a close comes back, and the server keeps serving ----------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[int, _Errors]]:
    errors = _Errors()
    logger = logging.getLogger("threenines.serve.httpserver")
    logger.addHandler(errors)
    server = ExporterHTTPServer("127.0.0.1", 0, lambda: [b"a 1\n", b"b 2\n"], lambda: (True, "ok"),
                                max_post_bytes=4096, web=WebConfig(users={"u": HASH}))
    server.add_post("/echo", lambda body, headers: (200, b"%d\n" % len(body)))
    server.add_post("/open", lambda body, headers: (200, body[:64]), own_auth=True)
    server.start()
    try:
        assert statuses(exchange(server.address[1], GOOD_HEALTHZ)) == [200]  # verified once, then cached
        yield server.address[1], errors
    finally:
        server.stop()
        logger.removeHandler(errors)


METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "get", "G ET", "", "PRI", "CONNECT"]) | st.text(max_size=8)
TARGETS = st.sampled_from(["/metrics", "/healthz", "/", "/echo", "/open", "//x", "*", "http://x/metrics", "/%00",
                           "/metrics?x=1"]) | st.text(max_size=20)
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.1.1", "http/1.1", "HTTP/x",
                            "", "HTTP/1.1 extra"])
NAMES = st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Authorization", "Connection", "Expect",
                         "content-length", "Transfer-Encoding ", " X", "X:Y", ""]) | st.text(max_size=12)
VALUES = st.sampled_from(["0", "4", "-1", "+4", "99999999999999999999", "chunked", "identity", "close",
                          "keep-alive", "100-continue", basic("u", "scrape-me"), basic("u", "no"), "Basic !!",
                          "", " 4 ", "4, 4", "a\r\n b"]) | st.text(max_size=30)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    line = f"{draw(METHODS)} {draw(TARGETS)} {draw(VERSIONS)}"
    headers = [f"{draw(NAMES)}: {draw(VALUES)}" for _ in range(draw(st.integers(0, 6)))]
    text = "\r\n".join([line, *headers]) + "\r\n\r\n"
    return text.encode("utf-8", "surrogatepass") + draw(st.binary(max_size=200))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=requests())
@example(data=b"GET /metrics\r\n\r\n")
@example(data=b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
@example(data=b"POST /open HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
@example(data=b"GET /metrics HTTP/1.1\r\nAuthorization: Basic " + base64.b64encode(b"u:" + b"x" * 100) + b"\r\n\r\n")
@example(data=b"GET /metrics HTTP/1.1\r\nAuthorization: Basic " + base64.b64encode(b"\xff:\xfe") + b"\r\n\r\n")
def test_any_request_gets_a_status_line_or_a_close_and_the_server_keeps_serving(
        fuzz_server: tuple[int, _Errors], data: bytes) -> None:
    port, errors = fuzz_server
    reply = exchange(port, data, timeout=10)
    assert reply == b"" or STATUS_RE.match(reply), reply[:200]
    assert statuses(exchange(port, GOOD_HEALTHZ)) == [200]
    assert errors.records == [], [r.getMessage() for r in errors.records]
