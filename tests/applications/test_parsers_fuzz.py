"""The parsers of what servers send never raise anything but CheckFailure, and every failure has a reason."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.probes.app_checks import (
    NO_EVIDENCE_REASONS,
    REASONS,
    CheckFailure,
    dechunk,
    parse_reply,
    parse_response_head,
)

lines = st.lists(st.one_of(st.binary(max_size=80), st.sampled_from(
    [b"HTTP/1.1 200 OK", b"Content-Length: 3", b"250-STARTTLS", b"250 OK", b"220 ready", b"0", b"5\r\nhello"])),
    max_size=8)


def _reason_only(call) -> None:
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
