"""A small asyncio HTTP/1.1 client for one POST: the customer webhook, the SMS/voice gateway, PagerDuty.

One connection per request (`Connection: close`), TLS verified against the system's CAs for https, the reply's
status and at most 64 KiB of its body (Content-Length, chunked, or until close). The caller bounds the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from dataclasses import dataclass

MAX_BODY = 64 * 1024
MAX_HEADERS = 100


class HttpError(Exception):
    """No HTTP reply: reason is a fixed word (connect, tls, protocol), detail never holds a secret."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:300]


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes


def _target(url: str) -> tuple[str, str, int, str, bool]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("config", f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return parts.hostname, host_header, port, path, secure


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        for _ in range(10_000):
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise HttpError("protocol", "bad chunk size") from None
            if size == 0:
                return out
            chunk = await reader.readexactly(size)
            await reader.readline()
            out += chunk[: max(0, MAX_BODY - len(out))]
            if len(out) >= MAX_BODY:
                return out
        return out
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError("protocol", "bad Content-Length") from None
        return await reader.readexactly(min(length, MAX_BODY)) if length > 0 else b""
    return await reader.read(MAX_BODY)


async def post(url: str, body: bytes, headers: dict[str, str], ca_file: str | None = None) -> HttpReply:
    host, host_header, port, path, secure = _target(url)
    context = ssl.create_default_context(cafile=ca_file) if secure else None
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                       server_hostname=host if secure else None)
    except ssl.SSLError as err:
        raise HttpError("tls", f"TLS with {host}:{port} failed: {err.reason or err}") from None
    except OSError as err:
        raise HttpError("connect", f"cannot connect to {host}:{port}: {err.strerror or type(err).__name__}") from None
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {len(body)}", "Connection: close",
                "User-Agent: threenines", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.decode("latin-1").split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise HttpError("protocol", f"not an HTTP reply: {status_line[:60]!r}")
        reply_headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        return HttpReply(int(fields[1]), await _read_body(reader, reply_headers))
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        raise HttpError("connect", f"connection to {host}:{port} lost: {type(err).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 2)
