"""Application checks (http/https, smtp, imap, pop3, ftp, tcp) on asyncio streams: one coroutine per check, no
thread.

Each protocol is a few lines over `asyncio.open_connection`, so no client library sits between the check and
its verdict: the whole check runs inside its own timeout, and every way it can fail maps to one reason of a
small fixed set (REASONS) — never an error message, which could quote a server's answer or a secret. The
parsers of what servers send (status lines, headers, chunked bodies, SMTP and FTP replies, IMAP and POP3
responses) are pure functions that raise only CheckFailure, so a fuzzer can hold them to that.

An FTP password is resolved from its reference at the moment it is sent and goes nowhere else: not into a
result, a log line or an exception (a failure carries only its reason).

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
from threenines.config.applications import (
    ANONYMOUS_PASSWORD,
    ApplicationCheck,
    FtpCheck,
    HttpCheck,
    MailboxCheck,
    SmtpCheck,
    TcpCheck,
    Tls,
)
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
# FTP (RFC 959 4.2): "ddd text" or a multi-line "ddd-text" … "ddd text"; the lines between are free text.
_FTP_LINE_RE = re.compile(rb"([1-5][0-9]{2})(?:([ -])([^\r\n]*))?")
# IMAP (RFC 9051 7.1): a greeting or tagged status; the tag is ours, so a fixed letter and a number.
_IMAP_STATUS_RE = re.compile(rb"(\*|t[0-9]{1,3}) (OK|NO|BAD|PREAUTH|BYE)(?: [^\r\n]*)?", re.IGNORECASE)
_POP3_STATUS_RE = re.compile(rb"(\+OK|-ERR)(?: [^\r\n]*)?")


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


def parse_ftp_reply(lines: list[bytes]) -> tuple[int, list[bytes]]:
    """A whole FTP reply → (code, its lines' texts): one "ddd text" line, or "ddd-text", free lines, "ddd text"."""
    if not lines:
        raise CheckFailure("protocol")
    match = _FTP_LINE_RE.fullmatch(lines[0].rstrip(b"\r\n"))
    if match is None:
        raise CheckFailure("protocol")
    code = match[1]
    multi = match[2] == b"-"
    if not multi and len(lines) != 1:
        raise CheckFailure("protocol")
    if multi and (len(lines) < 2 or not ftp_reply_ends(code, lines[-1])
                  or any(ftp_reply_ends(code, line) for line in lines[1:-1])):
        raise CheckFailure("protocol")
    texts = [match[3] or b""] + [line.rstrip(b"\r\n") for line in lines[1:-1]]
    if multi:
        texts.append(lines[-1].rstrip(b"\r\n")[4:])
    return int(code), texts


def ftp_reply_ends(code: bytes, line: bytes) -> bool:
    """Whether `line` closes a multi-line FTP reply that opened with `code`."""
    text = line.rstrip(b"\r\n")
    return text == code or text.startswith(code + b" ")


def parse_imap_status(line: bytes) -> tuple[bytes, str]:
    """An IMAP greeting or status response line → (tag or b"*", OK | NO | BAD | PREAUTH | BYE)."""
    match = _IMAP_STATUS_RE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        raise CheckFailure("protocol")
    return match[1], match[2].decode("ascii").upper()


def parse_pop3_status(line: bytes) -> bool:
    """A POP3 status line → True (+OK) or False (-ERR)."""
    match = _POP3_STATUS_RE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        raise CheckFailure("protocol")
    return match[1] == b"+OK"


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
        elif isinstance(spec, MailboxCheck):
            await (self._imap(spec, state) if check.kind == "imap" else self._pop3(spec, state))
        elif isinstance(spec, FtpCheck):
            await self._ftp(spec, state)
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

    async def _connect_tls(self, state: _State, spec: SmtpCheck | MailboxCheck
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Plain, or TLS from the first byte (implicit_tls)."""
        if spec.implicit_tls:
            assert spec.tls is not None
            return await self._connect(state, spec.host, spec.port, spec.ip_version, self._context(spec.tls),
                                       spec.tls.server_name)
        return await self._connect(state, spec.host, spec.port, spec.ip_version)

    async def _upgrade(self, state: _State, writer: asyncio.StreamWriter, tls: Tls | None, host: str) -> None:
        assert tls is not None
        await writer.start_tls(self._context(tls), server_hostname=tls.server_name or host)
        state.read_certificate(writer)

    async def _smtp(self, spec: SmtpCheck, state: _State) -> None:
        reader, writer = await self._connect_tls(state, spec)
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
            await self._upgrade(state, writer, spec.tls, spec.host)
            code, _ = await _command(reader, writer, f"EHLO {spec.helo}")
            if code != 250:
                raise CheckFailure("protocol")
        writer.write(b"QUIT\r\n")  # polite; the answer is not waited for

    async def _imap(self, spec: MailboxCheck, state: _State) -> None:
        reader, writer = await self._connect_tls(state, spec)
        line = await _readline(reader, "bad_banner")
        try:
            tag, status = parse_imap_status(line)
        except CheckFailure:
            raise CheckFailure("bad_banner") from None
        if tag != b"*" or status not in ("OK", "PREAUTH"):  # BYE: the server refuses this connection
            raise CheckFailure("bad_banner")
        if spec.starttls:
            # A server without STARTTLS (or one that pre-authenticated) answers NO or BAD.
            if await _imap_command(reader, writer, "t1", "STARTTLS") != "OK":
                raise CheckFailure("tls_invalid")
            await self._upgrade(state, writer, spec.tls, spec.host)
            if await _imap_command(reader, writer, "t2", "NOOP") != "OK":
                raise CheckFailure("protocol")
        writer.write(b"t9 LOGOUT\r\n")  # polite; the answer is not waited for

    async def _pop3(self, spec: MailboxCheck, state: _State) -> None:
        reader, writer = await self._connect_tls(state, spec)
        try:
            greeted = parse_pop3_status(await _readline(reader, "bad_banner"))
        except CheckFailure:
            raise CheckFailure("bad_banner") from None
        if not greeted:
            raise CheckFailure("bad_banner")
        if spec.starttls:
            if not await _pop3_command(reader, writer, "STLS"):
                raise CheckFailure("tls_invalid")
            await self._upgrade(state, writer, spec.tls, spec.host)
            # QUIT is valid before login and answered: the server speaks POP3 over the new TLS session.
            if not await _pop3_command(reader, writer, "QUIT"):
                raise CheckFailure("protocol")
            return
        writer.write(b"QUIT\r\n")

    async def _ftp(self, spec: FtpCheck, state: _State) -> None:
        reader, writer = await self._connect(state, spec.host, spec.port, spec.ip_version)
        code, _ = await _ftp_reply(reader, "bad_banner")
        if code != 220:  # 120 (ready in n minutes) and 421 (not available) are not a working service
            raise CheckFailure("bad_banner")
        if spec.starttls:
            code, _ = await _ftp_command(reader, writer, "AUTH TLS")
            if code != 234:  # a server without FTPS answers 500/502/530
                raise CheckFailure("tls_invalid")
            await self._upgrade(state, writer, spec.tls, spec.host)
        if spec.username is None:
            if spec.starttls:
                await _ftp_command(reader, writer, "NOOP")  # any FTP reply: it speaks FTP over the TLS session
            writer.write(b"QUIT\r\n")
            return
        code, _ = await _ftp_command(reader, writer, f"USER {spec.username}")
        if code == 331:
            password = spec.password.resolve() if spec.password is not None else ANONYMOUS_PASSWORD
            if "\r" in password or "\n" in password:
                raise CheckFailure("config")  # cannot be sent on one line: nothing was checked
            code, _ = await _ftp_command(reader, writer, f"PASS {password}")
            del password
        if code in (230, 202):  # logged in (202: no password needed)
            writer.write(b"QUIT\r\n")
            return
        if code >= 500 or code == 332:  # 530 not logged in; 332 needs an account (ACCT) the check does not have
            raise CheckFailure("auth_failed")
        raise CheckFailure("protocol")

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
        line = await _readline(reader, reason)  # closed mid-reply or a line past the limit: `reason`
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


async def _readline(reader: asyncio.StreamReader, reason: str = "protocol") -> bytes:
    """One line (with its LF) of at most MAX_LINE bytes; a line cut short or too long fails with `reason`."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the stream's limit
        raise CheckFailure(reason) from None
    if not line.endswith(b"\n") or len(line) > MAX_LINE:
        raise CheckFailure(reason)
    return line


async def _ftp_reply(reader: asyncio.StreamReader, reason: str = "protocol") -> tuple[int, list[bytes]]:
    lines = [await _readline(reader, reason)]
    code = lines[0][:3]
    if lines[0][3:4] == b"-":
        while not ftp_reply_ends(code, lines[-1]) or len(lines) == 1:
            if len(lines) >= MAX_REPLY_LINES:
                raise CheckFailure(reason)
            lines.append(await _readline(reader, reason))
    try:
        return parse_ftp_reply(lines)
    except CheckFailure:
        raise CheckFailure(reason) from None


async def _ftp_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str
                       ) -> tuple[int, list[bytes]]:
    writer.write(line.encode("utf-8") + b"\r\n")
    await writer.drain()
    return await _ftp_reply(reader)


async def _imap_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str, command: str) -> str:
    """Send a tagged command; skip untagged lines; the tagged status (OK | NO | BAD)."""
    writer.write(f"{tag} {command}\r\n".encode("ascii"))
    await writer.drain()
    for _ in range(MAX_REPLY_LINES):
        line = await _readline(reader)
        if line.startswith(b"* "):
            continue  # untagged data (CAPABILITY, …)
        got, status = parse_imap_status(line)
        if got != tag.encode("ascii") or status not in ("OK", "NO", "BAD"):
            raise CheckFailure("protocol")
        return status
    raise CheckFailure("protocol")


async def _pop3_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: str) -> bool:
    writer.write(command.encode("ascii") + b"\r\n")
    await writer.drain()
    return parse_pop3_status(await _readline(reader))


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> tuple[int, list[bytes]]:
    writer.write(line.encode("ascii") + b"\r\n")
    await writer.drain()
    return await _reply(reader)
