"""IMAP, POP3, FTP and implicit-TLS SMTP checks against Debian's real dovecot and vsftpd (and aiosmtpd) on
loopback: each way the application fails gives its reason, and an FTP password never leaves the login."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.applications.servers import (
    SERVER_NAME,
    Dovecot,
    Pki,
    Vsftpd,
    banner_server,
    dovecot,
    make_pki,
    silent_listener,
    smtp_server,
    vsftpd,
)
from tests.applications.test_checks import inventory, run
from tests.support import free_port
from threenines.exposition.applications import ApplicationCollector
from threenines.probes.app_poller import ApplicationPoller


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Dovecot]:
    with dovecot(tmp_path_factory.mktemp("dovecot"), pki.good) as ports:
        yield ports


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Vsftpd]:
    with vsftpd(tmp_path_factory.mktemp("vsftpd"), pki.good) as server:
        yield server


def tls(pki: Pki) -> str:
    return f"ca_file: '{pki.ca}', server_name: {SERVER_NAME}"


def at(port: int) -> str:
    return f"address: '127.0.0.1:{port}'"


# -- imap and pop3 (dovecot) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_a_greeting_mailbox_server_is_up_in_plain_text_after_starttls_and_over_implicit_tls(
        mail: Dovecot, pki: Pki, kind: str) -> None:
    plain, implicit = (mail.imap, mail.imaps) if kind == "imap" else (mail.pop3, mail.pop3s)
    result = run(f"{kind}: {{{at(plain)}}}")
    assert (result.ok, result.reason, result.cert_not_after) == (True, "", None)
    for spec in (f"{at(plain)}, starttls: true", f"{at(implicit)}, tls: implicit"):
        result = run(f"{kind}: {{{spec}, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after), spec


@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_a_mailbox_certificate_from_an_unknown_ca_or_for_another_name_is_tls_invalid(
        mail: Dovecot, pki: Pki, kind: str) -> None:
    plain, implicit = (mail.imap, mail.imaps) if kind == "imap" else (mail.pop3, mail.pop3s)
    for spec in (f"{at(plain)}, starttls: true", f"{at(implicit)}, tls: implicit"):
        assert run(f"{kind}: {{{spec}, server_name: {SERVER_NAME}}}").reason == "tls_invalid", spec
        assert run(f"{kind}: {{{spec}, ca_file: '{pki.ca}', server_name: other.test}}").reason == "tls_invalid"
        unverified = run(f"{kind}: {{{spec}, verify: false}}")
        assert (unverified.ok, unverified.cert_not_after) == (True, pki.good_not_after)
    # TLS spoken to the plain port: the server's plain greeting is no TLS handshake.
    assert run(f"{kind}: {{{at(plain)}, tls: implicit, {tls(pki)}}}").reason == "tls_invalid"


def test_the_other_protocols_greeting_or_a_refusal_is_bad_banner(mail: Dovecot) -> None:
    assert run(f"imap: {{{at(mail.pop3)}}}").reason == "bad_banner"  # "+OK Dovecot ready."
    assert run(f"pop3: {{{at(mail.imap)}}}").reason == "bad_banner"  # "* OK [CAPABILITY …] Dovecot ready."
    with banner_server(b"* BYE Too many connections\r\n") as port:
        assert run(f"imap: {{{at(port)}}}").reason == "bad_banner"
    with banner_server(b"-ERR [SYS/TEMP] Too many connections\r\n") as port:
        assert run(f"pop3: {{{at(port)}}}").reason == "bad_banner"


def test_an_expired_mailbox_certificate_is_tls_expired_and_a_stopped_server_connect_refused(
        tmp_path: Path, pki: Pki) -> None:
    with dovecot(tmp_path / "expired", pki.expired) as ports:
        assert run(f"imap: {{{at(ports.imap)}, starttls: true, {tls(pki)}}}").reason == "tls_expired"
        assert run(f"pop3: {{{at(ports.pop3s)}, tls: implicit, {tls(pki)}}}").reason == "tls_expired"
        assert run(f"imap: {{{at(ports.imap)}}}").ok is True
    assert run(f"imap: {{{at(ports.imap)}}}").reason == "connect_refused"
    assert run(f"pop3: {{{at(ports.pop3s)}, tls: implicit, {tls(pki)}}}").reason == "connect_refused"


@pytest.mark.parametrize("kind", ["imap", "pop3", "ftp"])
def test_a_server_that_accepts_and_never_greets_is_timeout(kind: str) -> None:
    with silent_listener() as port:
        assert run(f"{kind}: {{{at(port)}}}").reason == "timeout"
    assert run(f"{kind}: {{{at(free_port())}}}").reason == "connect_refused"


# -- ftp (vsftpd) ----------------------------------------------------------------------------------------------

def test_an_ftp_server_that_greets_220_is_up_and_a_login_with_the_right_password_too(
        ftp: Vsftpd, tmp_path: Path) -> None:
    assert run(f"ftp: {{{at(ftp.port)}}}").ok is True
    secret = tmp_path / "ftp-password"
    secret.write_text(ftp.password + "\n")
    result = run(f"ftp: {{{at(ftp.port)}, login: {{username: anonymous, password: {{file: '{secret}'}}}}}}")
    assert (result.ok, result.reason) == (True, "")


def test_a_wrong_ftp_password_is_auth_failed_and_appears_nowhere(
        ftp: Vsftpd, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "not-the-Secret-7f3a"
    monkeypatch.setenv("FTP_PASSWORD", wrong)
    inv = inventory(f"{{id: files, ftp: {{{at(ftp.port)}, login: {{username: anonymous, "
                    f"password: {{env: FTP_PASSWORD}}}}}}, timeout: 2s}}")
    poller = ApplicationPoller(inv, lambda key, at, ok: None)
    registry = CollectorRegistry()
    registry.register(ApplicationCollector(poller.statuses))
    caplog.set_level(logging.DEBUG)
    result = asyncio.run(poller.check_once("acme", poller.checks[0][1]))
    assert (result.ok, result.reason) == (False, "auth_failed")
    exposition = generate_latest(registry).decode()
    assert 'threenines_application_check_failures_total{customer="acme",reason="auth_failed",target="files"} 1.0' \
        in exposition
    for text in (exposition, caplog.text, repr(result), repr(poller.statuses()), repr(inv)):
        assert wrong not in text


def test_an_ftp_user_the_server_refuses_is_auth_failed(ftp: Vsftpd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", ftp.password)
    # vsftpd here is anonymous only: "530 This FTP server is anonymous only." to USER.
    spec = f"{at(ftp.port)}, login: {{username: bob, password: {{env: FTP_PASSWORD}}}}"
    assert run(f"ftp: {{{spec}}}").reason == "auth_failed"


def test_an_unreadable_ftp_password_is_no_evidence(ftp: Vsftpd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "set-at-load")
    check = inventory(f"{{id: app, timeout: 2s, ftp: {{{at(ftp.port)}, login: {{username: anonymous, "
                      f"password: {{env: FTP_PASSWORD}}}}}}}}").customers[0].applications[0]
    monkeypatch.delenv("FTP_PASSWORD")
    from threenines.probes.app_checks import AppProber

    result = asyncio.run(AppProber().run(check))
    assert (result.ok, result.reason) == (None, "config")


def test_explicit_ftps_checks_the_certificate_and_logs_in_over_tls(
        ftp: Vsftpd, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", ftp.password)
    result = run(f"ftp: {{{at(ftp.port)}, starttls: true, {tls(pki)}}}")
    assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after)
    login = "login: {username: anonymous, password: {env: FTP_PASSWORD}}"
    assert run(f"ftp: {{{at(ftp.port)}, tls: starttls, {tls(pki)}, {login}}}").ok is True
    assert run(f"ftp: {{{at(ftp.port)}, starttls: true, server_name: {SERVER_NAME}}}").reason == "tls_invalid"


def test_ftps_required_from_a_server_without_it_is_tls_invalid_and_a_stopped_one_connect_refused(
        tmp_path: Path, pki: Pki) -> None:
    with vsftpd(tmp_path / "plain") as server:
        assert run(f"ftp: {{{at(server.port)}}}").ok is True
        assert run(f"ftp: {{{at(server.port)}, starttls: true, {tls(pki)}}}").reason == "tls_invalid"
    assert run(f"ftp: {{{at(server.port)}}}").reason == "connect_refused"


def test_ftp_banners_multi_line_welcome_is_up_busy_or_foreign_is_bad_banner() -> None:
    with banner_server(b"220-Welcome\r\nto the customer's server\r\n220 ready\r\n") as port:
        assert run(f"ftp: {{{at(port)}}}").ok is True
    for banner in (b"421 Too many users, try later\r\n", b"120 Ready in 5 minutes\r\n",
                   b"SSH-2.0-OpenSSH_9.2\r\n", b"220-Welcome\r\n"):
        with banner_server(banner) as port:
            assert run(f"ftp: {{{at(port)}}}").reason == "bad_banner", banner


# -- smtp over implicit TLS (aiosmtpd) -------------------------------------------------------------------------

def test_smtp_over_implicit_tls_checks_the_certificate(pki: Pki) -> None:
    with smtp_server(pair=pki.good, implicit=True) as port:
        result = run(f"smtp: {{{at(port)}, tls: implicit, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after)
        assert run(f"smtp: {{{at(port)}, tls: implicit, server_name: {SERVER_NAME}}}").reason == "tls_invalid"
        # A plain-text check of a TLS port: each side waits for the other to speak first.
        assert run(f"smtp: {{{at(port)}}}").reason == "timeout"
    with smtp_server(pair=pki.expired, implicit=True) as port:
        assert run(f"smtp: {{{at(port)}, tls: implicit, {tls(pki)}}}").reason == "tls_expired"
    with smtp_server() as port:
        assert run(f"smtp: {{{at(port)}, tls: implicit, {tls(pki)}}}").reason == "tls_invalid"
