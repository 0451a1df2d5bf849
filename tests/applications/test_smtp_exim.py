"""The SMTP check against Debian's real exim4 (exim4-daemon-light), started by the test as its own process on
127.0.0.1 and ::1 (tests/applications/exim_server.py says how, and what exim 4.96 refuses on the way): plain
SMTP, STARTTLS with a certificate from the test's CA, STARTTLS required by the check from an exim that does not
offer it, implicit TLS (tls_on_connect_ports), a stopped exim; and through a real `threenines serve`, one failed
check is no outage while two consecutive ones determine it, from the first.

Expected reasons are the contract's (docs/design.md "Applications"): a certificate the check cannot verify (an
unknown CA, another name) is `tls_invalid`, an expired one `tls_expired`, a server that does not offer the
upgrade the check requires `tls_invalid`, a closed port `connect_refused`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.applications.exim_server import Exim, exim
from tests.applications.servers import SERVER_NAME, Pki, make_pki
from tests.applications.test_checks import run
from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import free_port, wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mta(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Exim]:
    """Exim with the test CA's certificate: STARTTLS offered on `smtp`, TLS from the first byte on `smtps`."""
    with exim(tmp_path_factory.mktemp("exim-tls"), pki.good) as server:
        yield server


@pytest.fixture(scope="module")
def plain_mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exim]:
    """Exim without a certificate and `tls_advertise_hosts =`: its EHLO answer lists no STARTTLS."""
    with exim(tmp_path_factory.mktemp("exim-plain")) as server:
        yield server


def tls(pki: Pki) -> str:
    return f"ca_file: '{pki.ca}', server_name: {SERVER_NAME}"


def v4(port: int) -> str:
    return f"address: '127.0.0.1:{port}'"


def v6(port: int) -> str:
    return f"address: '[::1]:{port}', ip_version: 6"


def mainlog(server: Exim) -> str:
    path = server.directory / "log" / "mainlog"
    return path.read_text(errors="replace") if path.exists() else ""


def test_exim_greeting_220_and_answering_ehlo_is_up_over_ipv4_and_ipv6(mta: Exim, plain_mta: Exim) -> None:
    for server in (mta, plain_mta):
        for address in (v4(server.smtp), v6(server.smtp)):
            result = run(f"smtp: {{{address}}}")
            assert (result.ok, result.reason, result.cert_not_after) == (True, "", None), address
    # exim itself saw the checks, from both families (log_selector +smtp_connection).
    wait_until(lambda: "SMTP connection from [::1]" in mainlog(plain_mta)
               and "SMTP connection from [127.0.0.1]" in mainlog(plain_mta), 10, 0.1, "exim to log the checks")


def test_exim_starttls_with_the_test_ca_is_up_and_exports_the_certificate_expiry(mta: Exim, pki: Pki) -> None:
    for address in (v4(mta.smtp), v6(mta.smtp)):
        result = run(f"smtp: {{{address}, starttls: true, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after), address
    # `tls: starttls` is the same check spelt the other way.
    assert run(f"smtp: {{{v4(mta.smtp)}, tls: starttls, {tls(pki)}}}").ok is True


def test_exim_starttls_certificate_from_an_unknown_ca_or_for_another_name_is_tls_invalid(
        mta: Exim, pki: Pki) -> None:
    spec = f"{v4(mta.smtp)}, starttls: true"
    # Without ca_file the system's CAs are used, and the test CA is not among them.
    assert run(f"smtp: {{{spec}, server_name: {SERVER_NAME}}}").reason == "tls_invalid"
    assert run(f"smtp: {{{spec}, ca_file: '{pki.ca}', server_name: other.test}}").reason == "tls_invalid"
    # Not verifying is a choice of the inventory: then the same server is up, and the expiry still exported.
    unverified = run(f"smtp: {{{spec}, verify: false}}")
    assert (unverified.ok, unverified.reason, unverified.cert_not_after) == (True, "", pki.good_not_after)


def test_starttls_required_from_an_exim_that_does_not_offer_it_is_tls_invalid(plain_mta: Exim, pki: Pki) -> None:
    # docs/design.md: "A server that does not offer the upgrade is tls_invalid" — the mail would travel in clear.
    for address in (v4(plain_mta.smtp), v6(plain_mta.smtp)):
        result = run(f"smtp: {{{address}, starttls: true, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (False, "tls_invalid", None), address
    assert run(f"smtp: {{{v4(plain_mta.smtp)}}}").ok is True  # the same server, checked in plain text


def test_exim_implicit_tls_port_checks_the_certificate(mta: Exim, pki: Pki) -> None:
    assert mta.smtps is not None
    for address in (v4(mta.smtps), v6(mta.smtps)):
        result = run(f"smtp: {{{address}, tls: implicit, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after), address
    assert run(f"smtp: {{{v4(mta.smtps)}, tls: implicit, server_name: {SERVER_NAME}}}").reason == "tls_invalid"
    assert run(f"smtp: {{{v4(mta.smtps)}, tls: implicit, ca_file: '{pki.ca}', server_name: other.test}}"
               ).reason == "tls_invalid"
    # TLS spoken to the plain port: exim's 220 greeting is no TLS handshake.
    assert run(f"smtp: {{{v4(mta.smtp)}, tls: implicit, {tls(pki)}}}").reason == "tls_invalid"
    # A plain-text check of the TLS port: exim waits for a ClientHello, the check for a greeting.
    assert run(f"smtp: {{{v4(mta.smtps)}}}").reason == "timeout"


def test_an_expired_exim_certificate_is_tls_expired_and_a_stopped_exim_connect_refused(
        tmp_path: Path, pki: Pki) -> None:
    with exim(tmp_path / "expired", pki.expired) as server:
        assert server.smtps is not None
        assert run(f"smtp: {{{v4(server.smtp)}, starttls: true, {tls(pki)}}}").reason == "tls_expired"
        assert run(f"smtp: {{{v6(server.smtps)}, tls: implicit, {tls(pki)}}}").reason == "tls_expired"
        assert run(f"smtp: {{{v4(server.smtp)}}}").ok is True
    assert not server.process.alive()
    for spec in (v4(server.smtp), v6(server.smtp), f"{v4(server.smtps)}, tls: implicit, {tls(pki)}"):
        assert run(f"smtp: {{{spec}}}").reason == "connect_refused", spec


def test_serve_one_failed_smtp_check_is_no_outage_two_consecutive_ones_determine_it(
        tmp_path: Path, pki: Pki) -> None:
    smtp, smtps = free_port(), free_port()  # kept across exim's restart
    config = tmp_path / "inventory.yml"
    # interval 3s, timeout 1s: after the first failure, the test has about 2 s to restart exim before the next.
    config.write_text(inventory_text({"port-a": "127.0.0.1"}, interval="2s") + (
        "    applications:\n"
        f"      - {{id: mail, smtp: {{{v6(smtp)}, starttls: true, {tls(pki)}}}, interval: 3s, threshold: 2,"
        " timeout: 1s}\n"))
    labels = {"customer": "acme", "service": "application", "target": "mail"}
    check = {"customer": "acme", "target": "mail"}

    def metric(name: str, text: str | None = None, **more: str) -> float | None:
        return sample(text if text is not None else scrape(port), name, **(labels if name.startswith(
            "threenines_service_") else check), **more)

    def refused(text: str | None = None) -> float:
        return metric("threenines_application_check_failures_total", text, reason="connect_refused") or 0.0

    with exim(tmp_path / "exim", pki.good, smtp=smtp, smtps=smtps) as first:
        server, port = serve(tmp_path, config)
        with server:
            wait_until(lambda: (metric("threenines_application_checks_total") or 0) >= 1
                       and metric("threenines_service_known") == 1, 30, 0.2, "a first check of exim")
            text = scrape(port)
            assert metric("threenines_service_up", text) == 1 and refused(text) == 0
            assert metric("threenines_application_certificate_expiry_timestamp_seconds", text) \
                == pki.good_not_after

            first.process.stop()  # by PID; the context's own stop is then a no-op
            wait_until(lambda: refused() >= 1, 15, 0.1, "one failed check")
            text = scrape(port)
            runs = metric("threenines_application_checks_total", text) or 0
            assert refused(text) == 1, "exim was restarted too late: two failures before it listened again"
            with exim(tmp_path / "exim", pki.good, smtp=smtp, smtps=smtps):
                wait_until(lambda: (metric("threenines_application_checks_total") or 0) > runs, 15, 0.1,
                           "the check after the failure")
                text = scrape(port)
                # A single failure followed by a success: never an outage, not even retroactively.
                assert refused(text) == 1
                assert metric("threenines_service_up", text) == 1
                assert metric("threenines_service_outage_start_timestamp_seconds", text) == 0
                assert metric("threenines_service_outage_seconds_total", text) == 0

            stopped_at = time.time()
            wait_until(lambda: metric("threenines_service_up") == 0, 30, 0.2,
                       "two consecutive failed checks to determine the outage")
            text = scrape(port)
            assert refused(text) >= 3
            start = metric("threenines_service_outage_start_timestamp_seconds", text) or 0
            determined = metric("threenines_service_determined_timestamp_seconds", text) or 0
            # The outage runs from the first of the two failures (after the second stop), not from determination.
            assert stopped_at <= start < determined
            # Not provider outage time by default: the customer's connectivity is untouched.
            assert sample(text, "threenines_service_up", customer="acme", service="connectivity",
                          target="port-a") == 1
