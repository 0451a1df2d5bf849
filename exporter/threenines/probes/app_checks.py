"""Application checks (http/https, smtp, tcp) on asyncio streams: one coroutine per check, no thread.

Each protocol is a few lines over `asyncio.open_connection`, so no client library sits between the check and
its verdict: the whole check runs inside its own timeout, and every way it can fail maps to one reason of a
small fixed set (REASONS) — never an error message, which could quote a server's answer or a secret. The
parsers of what servers send (status lines, headers, chunked bodies, SMTP replies) are pure functions that
raise only CheckFailure, so a fuzzer can hold them to that.

A check that could not be made for a local reason (no file descriptors, a local firewall's EPERM, an unreadable
CA file) is no evidence (`ok=None`: unknown), as a ping that could not be sent.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import re
import socket
import ssl
import time
import traceback
from dataclasses import dataclass

from threenines import __version__
from threenines.config.applications import ApplicationCheck, HttpCheck, SmtpCheck, TcpCheck, Tls
from threenines.config.configfile import ConfigError

log = logging.getLogger(__name__)

# Failures: the application did not do its job, seen from the provider's monitoring point.
REASONS = ("connect_refused", "unreachable", "timeout", "dns", "tls_invalid", "tls_expired", "bad_status",
           "body_mismatch", "bad_banner", "auth_failed", "protocol")
# No evidence (unknown, not failure): the check could not be made here.
NO_EVIDENCE_REASONS = ("local", "config")

MAX_LINE = 4096  # a status line, header line or SMTP reply line
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024  # what a body regex is matched against (the start of the body)
MAX_REPLY_LINES = 100
_X509_V_ERR_CERT_HAS_EXPIRED = 10
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_LOCAL = {errno.EPERM, errno.EACCES, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9]{2})(?: [^\r\n]*)?")
_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REPLY_RE = re.compile(rb"([2-5][0-9]{2})([ -])([^\r\n]*)")


class CheckFailure(Exception):
    def __init__(self, reason: str) -> None:
        assert reason in REASONS or reason in NO_EVIDENCE_REASONS, reason
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckResult:
    ok: bool | None  # True: the application works; False: failed (reason); None: no evidence (reason)
    reason: str  # "" when ok
    duration: float  # seconds
    cert_not_after: float | None = None  # Unix time the server's certificate expires (TLS checks)


# -- parsers of what a server sends ----------------------------------------------------------------------------

def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """An HTTP/1.x response head (status line and headers, up to the blank line) → (status, headers with
    lower-case names; a repeated header's values joined by ", ")."""
    lines = head.split(b"\r\n")
    match = _STATUS_RE.fullmatch(lines[0])
    if match is None:
        raise CheckFailure("protocol")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise CheckFailure("protocol")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(match[1]), headers


def dechunk(data: bytes, limit: int = MAX_BODY) -> bytes:
    """The body of a chunked transfer coding, up to `limit` bytes; a body cut short keeps what arrived."""
    out = bytearray()
    pos = 0
    while len(out) < limit:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break  # cut short (limit reached while reading)
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16) if re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text) else -1
        except ValueError:
            size = -1
        if size < 0:
            raise CheckFailure("protocol")
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out[:limit])


def parse_reply_line(line: bytes) -> tuple[int, bool, bytes]:
    """One SMTP reply line → (code, last line of the reply, text)."""
    match = _REPLY_RE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        raise CheckFailure("protocol")
    return int(match[1]), match[2] == b" ", match[3]


def parse_reply(lines: list[bytes]) -> tuple[int, list[bytes]]:
    """A whole (multi-line) SMTP reply: every line with the same code, the last one with a space."""
    if not lines:
        raise CheckFailure("protocol")
    code = -1
    texts = []
    for index, line in enumerate(lines):
        this, last, text = parse_reply_line(line)
        if code not in (-1, this) or last != (index == len(lines) - 1):
            raise CheckFailure("protocol")
        code = this
        texts.append(text)
    return code, texts


# -- the checks ----------------------------------------------------------------------------------------------------

class AppProber:
    """Runs checks; keeps the TLS contexts and compiled expressions they share (one per CA file / pattern)."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}

    async def run(self, check: ApplicationCheck) -> CheckResult:
        started = time.monotonic()
        state = _State()
        try:
            async with asyncio.timeout(check.policy.timeout):
                await self._run(check, state)
        except CheckFailure as failure:
            return self._result(failure.reason, started, state)
        except TimeoutError:
            return self._result("timeout", started, state)
        except ssl.SSLCertVerificationError as err:
            return self._result("tls_expired" if err.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED else "tls_invalid",
                                started, state)
        except ssl.SSLError:
            return self._result("tls_invalid", started, state)
        except ConnectionRefusedError:
            return self._result("connect_refused", started, state)
        except socket.gaierror:
            return self._result("dns", started, state)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, UnicodeError):
            return self._result("protocol", started, state)
        except OSError as err:
            if err.errno in _UNREACHABLE:
                return self._result("unreachable", started, state)
            if err.errno in _LOCAL:
                return self._result("local", started, state)
            return self._result("protocol", started, state)  # reset or closed mid-conversation
        except ConfigError:  # a secret reference that cannot be read now (SecretError): nothing was checked
            return self._result("config", started, state)
        except Exception as err:
            # Only the type and where: a library's message may quote the server's answer.
            frame = traceback.extract_tb(err.__traceback__)[-1]
            log.error("application check %s failed unexpectedly: %s at %s:%d", check.id, type(err).__name__,
                      frame.filename, frame.lineno)
            return self._result("protocol", started, state)
        finally:
            state.close()
        return CheckResult(True, "", time.monotonic() - started, state.not_after)

    @staticmethod
    def _result(reason: str, started: float, state: _State) -> CheckResult:
        ok = None if reason in NO_EVIDENCE_REASONS else False
        return CheckResult(ok, reason, time.monotonic() - started, state.not_after)

    async def _run(self, check: ApplicationCheck, state: _State) -> None:
        spec = check.spec
        if isinstance(spec, HttpCheck):
            await self._http(spec, state)
        elif isinstance(spec, SmtpCheck):
            await self._smtp(spec, state)
        else:
            await self._tcp(spec, state)

    # -- pieces -------------------------------------------------------------------------------------------

    def _context(self, tls: Tls) -> ssl.SSLContext:
        key = (tls.verify, tls.ca_file)
        context = self._contexts.get(key)
        if context is None:
            try:
                if tls.verify:
                    context = ssl.create_default_context(cafile=tls.ca_file)
                else:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            except (OSError, ssl.SSLError):
                raise CheckFailure("config") from None  # the CA file cannot be read: nothing was checked
            self._contexts[key] = context
        return context

    def _pattern(self, pattern: str) -> re.Pattern[str]:
        compiled = self._patterns.get(pattern)
        if compiled is None:
            compiled = self._patterns[pattern] = re.compile(pattern)
        return compiled

    @staticmethod
    async def _connect(state: _State, host: str, port: int, ip_version: int | None,
                       context: ssl.SSLContext | None = None, server_name: str | None = None
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(ip_version or 0, socket.AF_UNSPEC)
        reader, writer = await asyncio.open_connection(
            host, port, family=family, ssl=context, server_hostname=(server_name or host) if context else None,
            limit=MAX_HEAD)
        state.writer = writer
        if context is not None:
            state.read_certificate(writer)
        return reader, writer

    async def _http(self, spec: HttpCheck, state: _State) -> None:
        context = self._context(spec.tls) if spec.tls is not None else None
        server_name = spec.tls.server_name if spec.tls is not None else None
        reader, writer = await self._connect(state, spec.host, spec.port, spec.ip_version, context, server_name)
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        default_port = 443 if spec.tls is not None else 80
        host_header = spec.host_header or (host if spec.port == default_port else f"{host}:{spec.port}")
        lines = [f"GET {spec.path} HTTP/1.1", f"Host: {host_header}", f"User-Agent: threenines/{__version__}",
                 "Accept: */*", "Connection: close"]
        if spec.username is not None and spec.password is not None:
            token = base64.b64encode(f"{spec.username}:{spec.password.resolve()}".encode()).decode()
            lines.append(f"Authorization: Basic {token}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = parse_response_head(head[:-4])
        while 100 <= status < 200:  # an interim answer; bounded by the timeout and MAX_HEAD per head
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = parse_response_head(head[:-4])
        if status not in spec.expect_status:
            raise CheckFailure("auth_failed" if status in (401, 403) and spec.username is not None else "bad_status")
        if spec.body is None:
            return
        body = await self._body(reader, headers)
        if not self._pattern(spec.body).search(body.decode("utf-8", errors="replace")):
            raise CheckFailure("body_mismatch")

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return dechunk(await _read_to_eof(reader, MAX_BODY * 2))
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise CheckFailure("protocol")
            return await reader.readexactly(min(int(length), MAX_BODY))
        return await _read_to_eof(reader, MAX_BODY)

    async def _smtp(self, spec: SmtpCheck, state: _State) -> None:
        reader, writer = await self._connect(state, spec.host, spec.port, spec.ip_version)
        code, _ = await _reply(reader, "bad_banner")
        if code != 220:
            raise CheckFailure("bad_banner")
        code, extensions = await _command(reader, writer, f"EHLO {spec.helo}")
        if code != 250:
            raise CheckFailure("protocol")
        if spec.starttls:
            assert spec.tls is not None
            if not any(ext.upper().split(b" ")[0] == b"STARTTLS" for ext in extensions[1:]):
                raise CheckFailure("tls_invalid")  # the contract's server offers no STARTTLS
            code, _ = await _command(reader, writer, "STARTTLS")
            if code != 220:
                raise CheckFailure("tls_invalid")
            context = self._context(spec.tls)
            await writer.start_tls(context, server_hostname=spec.tls.server_name or spec.host)
            state.read_certificate(writer)
            code, _ = await _command(reader, writer, f"EHLO {spec.helo}")
            if code != 250:
                raise CheckFailure("protocol")
        writer.write(b"QUIT\r\n")  # polite; the answer is not waited for

    async def _tcp(self, spec: TcpCheck, state: _State) -> None:
        reader, writer = await self._connect(state, spec.host, spec.port, spec.ip_version)
        if spec.send is not None:
            writer.write(spec.send.encode())
            await writer.drain()
        if spec.expect is None:
            return
        pattern = self._pattern(spec.expect)
        seen = b""
        while len(seen) < MAX_LINE:
            data = await reader.read(MAX_LINE - len(seen))
            if not data:
                break
            seen += data
            if pattern.search(seen.decode("utf-8", errors="replace")):
                return
        raise CheckFailure("bad_banner")


class _State:
    """What a check learnt before it ended (the certificate) and what to close, whatever way it ended."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.not_after: float | None = None

    def read_certificate(self, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            from cryptography import x509

            self.not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()  # a probe owes the server no graceful TLS shutdown
            self.writer = None


async def _read_to_eof(reader: asyncio.StreamReader, limit: int) -> bytes:
    data = b""
    while len(data) < limit:
        more = await reader.read(limit - len(data))
        if not more:
            break
        data += more
    return data


async def _reply(reader: asyncio.StreamReader, reason: str = "protocol") -> tuple[int, list[bytes]]:
    lines = []
    for _ in range(MAX_REPLY_LINES):
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise CheckFailure(reason)  # closed mid-reply
        lines.append(line)
        try:
            _, last, _ = parse_reply_line(line)
        except CheckFailure:
            raise CheckFailure(reason) from None
        if last:
            try:
                return parse_reply(lines)
            except CheckFailure:
                raise CheckFailure(reason) from None
    raise CheckFailure(reason)


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> tuple[int, list[bytes]]:
    writer.write(line.encode("ascii") + b"\r\n")
    await writer.drain()
    return await _reply(reader)
