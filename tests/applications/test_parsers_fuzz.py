"""The parsers of what servers send never raise anything but CheckFailure, and every failure has a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.probes.app_checks import (
    NO_EVIDENCE_REASONS,
    REASONS,
    CheckFailure,
    _ftp_reply,
    _imap_command,
    _pop3_command,
    _readline,
    _reply,
    dechunk,
    ftp_reply_ends,
    parse_ftp_reply,
    parse_imap_status,
    parse_pop3_status,
    parse_reply,
    parse_response_head,
)

lines = st.lists(st.one_of(st.binary(max_size=80), st.sampled_from(
    [b"HTTP/1.1 200 OK", b"Content-Length: 3", b"250-STARTTLS", b"250 OK", b"220 ready", b"0", b"5\r\nhello",
     b"220-Welcome", b"220", b"230 Login successful.", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready",
     b"* BYE", b"t1 OK Begin TLS", b"t1 NO", b"+OK Dovecot ready.", b"-ERR", b"+OK"])),
    max_size=8)


def _reason_only(call: Callable[[], object]) -> None:
    try:
        call()
    except CheckFailure as failure:
        assert failure.reason in REASONS or failure.reason in NO_EVIDENCE_REASONS


@settings(max_examples=400, deadline=None)
@given(lines)
def test_response_heads_fail_only_with_a_reason(parts: list[bytes]) -> None:
    _reason_only(lambda: parse_response_head(b"\r\n".join(parts)))


@settings(max_examples=400, deadline=None)
@given(lines)
def test_smtp_replies_fail_only_with_a_reason(parts: list[bytes]) -> None:
    _reason_only(lambda: parse_reply([p + b"\r\n" for p in parts]))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400))
def test_chunked_bodies_fail_only_with_a_reason_and_respect_the_limit(data: bytes, limit: int) -> None:
    try:
        assert len(dechunk(data, limit)) <= limit
    except CheckFailure as failure:
        assert failure.reason == "protocol"


def test_the_parsers_read_what_real_servers_send() -> None:
    assert parse_response_head(b"HTTP/1.1 301 Moved\r\nLocation: /ok\r\nSet-Cookie: a\r\nset-cookie: b") == (
        301, {"location": "/ok", "set-cookie": "a, b"})
    assert parse_reply([b"250-mail.test\r\n", b"250-STARTTLS\r\n", b"250 HELP\r\n"]) == (
        250, [b"mail.test", b"STARTTLS", b"HELP"])
    assert dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n") == b"hello world"


# -- imap, pop3 and ftp ------------------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(lines)
def test_ftp_replies_fail_only_with_a_reason(parts: list[bytes]) -> None:
    _reason_only(lambda: parse_ftp_reply([p + b"\r\n" for p in parts]))
    if parts:
        _reason_only(lambda: ftp_reply_ends(parts[0][:3], parts[-1]))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=120), lines.map(b"\r\n".join)))
def test_imap_and_pop3_status_lines_fail_only_with_a_reason(line: bytes) -> None:
    _reason_only(lambda: parse_imap_status(line))
    _reason_only(lambda: parse_pop3_status(line))


class _Sink:
    """Stands in for the StreamWriter: the readers under test only write commands, whose bytes are kept."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None


def _feed(data: bytes, read: Callable[[asyncio.StreamReader, Any], Coroutine[Any, Any, object]]) -> None:
    """Run a reader of server answers over `data` (then EOF): it returns or fails with a reason, nothing else."""
    async def go() -> None:
        reader = asyncio.StreamReader(limit=256)  # small, so over-long lines are reached too
        reader.feed_data(data)
        reader.feed_eof()
        await read(reader, _Sink())

    _reason_only(lambda: asyncio.run(go()))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), lines.map(lambda ps: b"".join(p + b"\r\n" for p in ps)),
                 st.tuples(st.sampled_from([b"220-", b"* OK ", b"+OK "]), st.integers(200, 700), st.booleans()).map(
                     lambda t: t[0] + b"x" * t[1] + (b"\r\n" if t[2] else b""))))  # lines longer than the limit
def test_the_stream_readers_of_every_protocol_fail_only_with_a_reason(data: bytes) -> None:
    _feed(data, lambda r, w: _readline(r, "bad_banner"))
    _feed(data, lambda r, w: _reply(r, "bad_banner"))
    _feed(data, lambda r, w: _ftp_reply(r, "bad_banner"))
    _feed(data, lambda r, w: _imap_command(r, w, "t1", "STARTTLS"))
    _feed(data, lambda r, w: _pop3_command(r, w, "STLS"))


def test_the_new_parsers_read_what_dovecot_and_vsftpd_send() -> None:
    assert parse_ftp_reply([b"220 threenines test FTP\r\n"]) == (220, [b"threenines test FTP"])
    assert parse_ftp_reply([b"220-Welcome\r\n", b" to the server\r\n", b"220 ready\r\n"]) == (
        220, [b"Welcome", b" to the server", b"ready"])
    assert parse_ftp_reply([b"211-Features:\r\n", b" AUTH TLS\r\n", b"211 End\r\n"])[0] == 211
    assert parse_imap_status(b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n") == (
        b"*", "OK")
    assert parse_imap_status(b"t1 OK Begin TLS negotiation now.\r\n") == (b"t1", "OK")
    assert parse_pop3_status(b"+OK Dovecot (Debian) ready.\r\n") is True
    assert parse_pop3_status(b"-ERR [SYS/TEMP] busy\r\n") is False
    for bad in ([b"220-Welcome\r\n"], [b"220 a\r\n", b"220 b\r\n"], [b"2200 x\r\n"], []):
        try:
            parse_ftp_reply(bad)
        except CheckFailure as failure:
            assert failure.reason == "protocol"
        else:
            raise AssertionError(f"{bad!r} parsed")
