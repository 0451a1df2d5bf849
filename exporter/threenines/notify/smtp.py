"""An asyncio SMTP submission client: one message to one recipient, and the relay's acceptance as its receipt.

The relay's reply to the end of DATA (`250 2.0.0 Ok: queued as 4Xb7Q51c0Nz9`) is the moment the notification is
delivered in the contract's sense and the evidence of it; the queue id in it lets the relay's own log be found.

TLS: port 465 is TLS from the first byte; otherwise STARTTLS is used when the relay offers it, and with
`require_tls` (the default) a relay that does not offer it is refused before anything is sent. Certificates are
verified against the system's CAs or `smtp.ca_file`. A password is only sent inside TLS (or to a relay on the
loopback interface), as Go's net/smtp does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass

MAX_REPLY_LINES = 100
MAX_LINE = 4096
_QUEUE_ID_RES = (
    re.compile(r"queued as ([A-Za-z0-9._-]+)", re.I),  # Postfix, aiosmtpd-style relays
    re.compile(r"\bid=([A-Za-z0-9._-]+)"),  # Exim: "OK id=1rXyz-000Abc-2F"
    re.compile(r"\b([A-Za-z0-9]{8,}-[A-Za-z0-9-]+)\b"),  # Exim without "id=", Microsoft
)


class SmtpError(Exception):
    """The message was not accepted. reason: a fixed word for metrics; detail: the relay's words, never a secret."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:300]


@dataclass(frozen=True)
class SmtpReceipt:
    reply: str  # the relay's reply to the end of DATA
    queue_id: str | None
    tls: bool  # the message travelled inside TLS


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    require_tls: bool = True
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    helo: str = ""


def queue_id(reply: str) -> str | None:
    for pattern in _QUEUE_ID_RES:
        found = pattern.search(reply)
        if found:
            return found.group(1)
    return None


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, str]:
        lines = []
        for _ in range(MAX_REPLY_LINES):
            raw = await self.reader.readline()
            if not raw:
                raise SmtpError("protocol", "the relay closed the connection")
            line = raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise SmtpError("protocol", f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), "\n".join(lines)
        raise SmtpError("protocol", "reply longer than 100 lines")

    async def command(self, line: str, expect: tuple[int, ...], what: str, shown: str | None = None) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        code, text = await self.reply()
        if code not in expect:
            raise SmtpError(_reason(code), f"{shown or what}: {code} {text}".replace("\n", " "))
        return text


def _reason(code: int) -> str:
    return "rejected" if 500 <= code < 600 else "unavailable"


def _extensions(text: str) -> set[str]:
    return {line.split()[0].upper() for line in text.splitlines()[1:] if line.strip()}


def dot_stuffed(message: bytes) -> bytes:
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


async def send(settings: SmtpSettings, recipient: str, message: bytes) -> SmtpReceipt:
    """Submit one message; SmtpError when it is not accepted. The caller bounds the time (asyncio.timeout)."""
    implicit = settings.port == 465
    context = tls_context(settings.ca_file) if (implicit or settings.require_tls) else None
    try:
        reader, writer = await asyncio.open_connection(
            settings.host, settings.port, ssl=context if implicit else None,
            server_hostname=settings.host if implicit else None)
    except ssl.SSLError as err:
        raise SmtpError("tls", f"TLS with {settings.host}:{settings.port} failed: {err.reason or err}") from None
    except OSError as err:
        raise SmtpError("connect", f"cannot connect to {settings.host}:{settings.port}: "
                        f"{err.strerror or type(err).__name__}") from None
    session = _Session(reader, writer)
    tls = implicit
    try:
        code, text = await session.reply()
        if code != 220:
            raise SmtpError(_reason(code), f"greeting: {code} {text}")
        helo = settings.helo or socket.gethostname() or "localhost"
        extensions = _extensions(await session.command(f"EHLO {helo}", (250,), "EHLO"))
        if not tls and "STARTTLS" in extensions:
            await session.command("STARTTLS", (220,), "STARTTLS")
            try:
                await writer.start_tls(context or tls_context(settings.ca_file), server_hostname=settings.host)
            except ssl.SSLError as err:
                raise SmtpError("tls", f"STARTTLS with {settings.host}: {err.reason or err}") from None
            tls = True
            extensions = _extensions(await session.command(f"EHLO {helo}", (250,), "EHLO"))
        elif not tls and settings.require_tls:
            raise SmtpError("tls_required", f"{settings.host}:{settings.port} does not offer STARTTLS and "
                            "smtp.require_tls is true: nothing was sent (use a relay that offers STARTTLS, or set "
                            "require_tls: false for a relay on a trusted network)")
        if settings.username is not None:
            if not (tls or _loopback(settings.host)):
                raise SmtpError("tls_required", "the relay would receive the password without TLS: refused")
            if not any(e == "AUTH" for e in extensions):
                raise SmtpError("auth", "smtp.username is set but the relay offers no AUTH")
            token = base64.b64encode(f"\0{settings.username}\0{settings.password or ''}".encode()).decode()
            try:
                await session.command(f"AUTH PLAIN {token}", (235,), "AUTH", shown="AUTH PLAIN")
            except SmtpError as err:
                raise SmtpError("auth", err.detail) from None
        await session.command(f"MAIL FROM:<{settings.sender}>", (250,), "MAIL FROM")
        await session.command(f"RCPT TO:<{recipient}>", (250, 251), "RCPT TO")
        await session.command("DATA", (354,), "DATA")
        writer.write(dot_stuffed(message) + b".\r\n")
        await writer.drain()
        code, text = await session.reply()
        if code != 250:
            raise SmtpError(_reason(code), f"end of DATA: {code} {text}".replace("\n", " "))
        reply = f"{code} {text}".replace("\n", " ")[:300]
        try:
            writer.write(b"QUIT\r\n")
            await writer.drain()
            await asyncio.wait_for(session.reply(), 2)
        except (OSError, SmtpError, TimeoutError):
            pass  # accepted is accepted: the QUIT exchange proves nothing more
        return SmtpReceipt(reply=reply, queue_id=queue_id(text), tls=tls)
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        where = f"{settings.host}:{settings.port}"
        raise SmtpError("connect", f"connection to {where} lost: {type(err).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 2)


PROBE_TIMEOUT = 5.0
# RFC 2606 / RFC 6761 names: placeholders in examples and tests, never a real relay (and never to be looked up).
_RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", "example.com", "example.net", "example.org")


async def offers_starttls(host: str, port: int, helo: str = "") -> bool:
    """Connect, read the greeting, EHLO, QUIT: whether the relay offers STARTTLS (port 465 is TLS from the first
    byte: True without asking). SmtpError when it cannot be told. The caller bounds the time."""
    if port == 465:
        return True
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as err:
        raise SmtpError("connect", f"cannot connect to {host}:{port}: {err.strerror or type(err).__name__}") from None
    session = _Session(reader, writer)
    try:
        code, text = await session.reply()
        if code != 220:
            raise SmtpError(_reason(code), f"greeting: {code} {text}")
        extensions = _extensions(await session.command(f"EHLO {helo or socket.gethostname() or 'localhost'}",
                                                       (250,), "EHLO"))
        with contextlib.suppress(OSError, SmtpError):
            writer.write(b"QUIT\r\n")
            await writer.drain()
        return "STARTTLS" in extensions
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        raise SmtpError("connect", f"connection to {host}:{port} lost: {type(err).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


def require_tls_warning(smarthost: str, require_tls: bool, timeout: float = PROBE_TIMEOUT) -> str | None:
    """For `threenines check`: with `smtp.require_tls: true`, ask the relay (`smtp.smarthost`, HOST:PORT) whether it
    offers STARTTLS, within `timeout` seconds. A warning when it does not (every e-mail would fail with reason
    tls_required) or cannot be asked from here; None when it does, without require_tls, or for a reserved
    placeholder name (RFC 2606: nothing to ask)."""
    from threenines.config.configfile import HOSTPORT_RE

    found = HOSTPORT_RE.fullmatch(smarthost)
    if not require_tls or found is None:
        return None
    host, port = found.group("host").strip("[]"), int(found.group("port") or 25)
    where = f"{host}:{port}"
    if host.lower().rstrip(".").endswith(_RESERVED_SUFFIXES):
        return None
    try:
        offered = asyncio.run(asyncio.wait_for(offers_starttls(host, port), timeout))
    except TimeoutError:
        return (f"notification.smtp: the relay {where} did not answer within {timeout:g} s, so whether it offers "
                "STARTTLS (smtp.require_tls: true) could not be checked from here")
    except SmtpError as err:
        return (f"notification.smtp: could not ask the relay {where} whether it offers STARTTLS "
                f"(smtp.require_tls: true): {err.detail}")
    if offered:
        return None
    return (f"notification.smtp: the relay {where} does not offer STARTTLS and smtp.require_tls is true: every "
            "e-mail to a contact would be refused before sending (reason tls_required). Use a relay that offers "
            "STARTTLS (or port 465), or set require_tls: false for a relay on a trusted network")

