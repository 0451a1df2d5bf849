"""Application checks against real servers on loopback: each way an application fails gives its reason, and
results go through the contract: two consecutive failed checks determine an outage, one does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.applications.servers import (
    SERVER_NAME,
    Nginx,
    Pki,
    banner_server,
    make_pki,
    nginx,
    silent_listener,
    smtp_server,
)
from tests.support import free_port
from threenines.config.applications import ApplicationCheck
from threenines.config.inventory import Inventory, TargetKey
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.engine import ContractEngine, specs_from_inventory
from threenines.probes.app_checks import AppProber, CheckResult
from threenines.probes.app_poller import ApplicationPoller


def inventory(*checks: str, billable: bool = False) -> Inventory:
    lines = ["customers:", "  - id: acme", "    timezone: UTC",
             "    contacts: {version: '1', notify: [{email: noc@acme.example}]}",
             "    ping: {interval: 5m, threshold: 2}", "    ports: [{id: port-a, address: 127.0.0.1}]",
             *(["    applications_billable: true"] if billable else []), "    applications:"]
    lines += [f"      - {check}" for check in checks]
    return parse_inventory_text("\n".join(lines) + "\n")


def check(spec: str) -> ApplicationCheck:
    return inventory(f"{{id: app, timeout: 2s, {spec}}}").customers[0].applications[0]


def run(spec: str) -> CheckResult:
    return asyncio.run(AppProber().run(check(spec)))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx"), pki) as ports:
        yield ports


def tls(pki: Pki) -> str:
    return f"ca_file: '{pki.ca}', server_name: {SERVER_NAME}"


# -- http ---------------------------------------------------------------------------------------------------

def test_a_working_page_is_up(web: Nginx) -> None:
    result = run(f"http: {{url: 'http://127.0.0.1:{web.http}/ok', body: 'hello three'}}")
    assert (result.ok, result.reason) == (True, "")
    assert result.duration >= 0 and result.cert_not_after is None


def test_a_working_page_over_ipv6(web: Nginx) -> None:
    assert run(f"http: {{url: 'http://[::1]:{web.http}/ok', ip_version: 6}}").ok is True


def test_an_answer_outside_the_expected_statuses_is_bad_status(web: Nginx) -> None:
    assert run(f"http: {{url: 'http://127.0.0.1:{web.http}/fail'}}").reason == "bad_status"
    assert run(f"http: {{url: 'http://127.0.0.1:{web.http}/moved'}}").reason == "bad_status"
    assert run(f"http: {{url: 'http://127.0.0.1:{web.http}/moved', expect_status: [200, 301]}}").ok is True


def test_a_page_without_the_expected_text_is_body_mismatch(web: Nginx) -> None:
    assert run(f"http: {{url: 'http://127.0.0.1:{web.http}/ok', body: 'goodbye'}}").reason == "body_mismatch"


def test_https_with_the_customers_ca_and_name_is_up_and_exports_the_expiry(web: Nginx, pki: Pki) -> None:
    result = run(f"http: {{url: 'https://127.0.0.1:{web.https}/ok', {tls(pki)}, host: {SERVER_NAME}}}")
    assert (result.ok, result.reason) == (True, "")
    assert result.cert_not_after == pki.good_not_after


def test_an_expired_certificate_is_tls_expired(web: Nginx, pki: Pki) -> None:
    assert run(f"http: {{url: 'https://127.0.0.1:{web.expired}/ok', {tls(pki)}}}").reason == "tls_expired"


def test_a_certificate_for_another_name_is_tls_invalid(web: Nginx, pki: Pki) -> None:
    assert run(f"http: {{url: 'https://127.0.0.1:{web.wrong_name}/ok', {tls(pki)}}}").reason == "tls_invalid"


def test_a_certificate_from_an_unknown_ca_is_tls_invalid_unless_verification_is_off(web: Nginx, pki: Pki) -> None:
    url = f"https://127.0.0.1:{web.https}/ok"
    assert run(f"http: {{url: '{url}', server_name: {SERVER_NAME}}}").reason == "tls_invalid"
    unverified = run(f"http: {{url: '{url}', verify: false}}")
    assert unverified.ok is True and unverified.cert_not_after == pki.good_not_after


def test_a_closed_port_is_connect_refused() -> None:
    assert run(f"http: {{url: 'http://127.0.0.1:{free_port()}/'}}").reason == "connect_refused"


def test_a_server_that_accepts_and_never_answers_is_timeout() -> None:
    with silent_listener() as port:
        assert run(f"http: {{url: 'http://127.0.0.1:{port}/'}}").reason == "timeout"
        assert run(f"http: {{url: 'https://127.0.0.1:{port}/'}}").reason == "timeout"


def test_a_non_http_answer_is_protocol() -> None:
    with banner_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as port:
        assert run(f"http: {{url: 'http://127.0.0.1:{port}/'}}").reason == "protocol"


# -- smtp and tcp ---------------------------------------------------------------------------------------------

def test_an_smtp_server_that_greets_and_answers_ehlo_is_up() -> None:
    with smtp_server() as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}'}}").ok is True


def test_smtp_starttls_checks_the_certificate(pki: Pki) -> None:
    with smtp_server(pair=pki.good) as port:
        result = run(f"smtp: {{address: '127.0.0.1:{port}', starttls: true, {tls(pki)}}}")
        assert (result.ok, result.reason, result.cert_not_after) == (True, "", pki.good_not_after)
        assert run(f"smtp: {{address: '127.0.0.1:{port}', starttls: true}}").reason == "tls_invalid"
    with smtp_server(pair=pki.expired) as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}', starttls: true, {tls(pki)}}}").reason == "tls_expired"


def test_smtp_without_starttls_offered_is_tls_invalid_when_the_check_requires_it(pki: Pki) -> None:
    with smtp_server() as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}', starttls: true, {tls(pki)}}}").reason == "tls_invalid"


def test_a_refusing_or_foreign_banner_is_bad_banner() -> None:
    with banner_server(b"554 no service here\r\n") as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}'}}").reason == "bad_banner"
    with banner_server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}'}}").reason == "bad_banner"
    with silent_listener() as port:
        assert run(f"smtp: {{address: '127.0.0.1:{port}'}}").reason == "timeout"


def test_tcp_connect_and_expect() -> None:
    with banner_server(b"220 ftp.customer.test FTP ready\r\n") as port:
        assert run(f"tcp: {{address: '127.0.0.1:{port}'}}").ok is True
        assert run(f"tcp: {{address: '127.0.0.1:{port}', expect: '^220 '}}").ok is True
        assert run(f"tcp: {{address: '127.0.0.1:{port}', send: \"QUIT\\r\\n\", expect: '^530'}}").reason \
            == "bad_banner"
    assert run(f"tcp: {{address: '127.0.0.1:{free_port()}'}}").reason == "connect_refused"


def test_an_unreadable_ca_file_is_no_evidence_not_a_failure(web: Nginx, tmp_path: Path) -> None:
    result = run(f"http: {{url: 'https://127.0.0.1:{web.https}/ok', ca_file: '{tmp_path / 'missing.pem'}'}}")
    assert (result.ok, result.reason) == (None, "config")


# -- the contract ---------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_two_consecutive_failed_checks_determine_an_outage_from_the_first_one_does_not(web: Nginx) -> None:
    inv = inventory(f"{{id: www, http: {{url: 'http://127.0.0.1:{web.http}/ok', body: hello}}, interval: 1m}}",
                    f"{{id: shop, http: {{url: 'http://127.0.0.1:{web.http}/fail'}}, interval: 1m}}")
    clock = Clock()
    engine = ContractEngine()
    engine.configure(specs_from_inventory(inv), clock())
    poller = ApplicationPoller(inv, engine.observe, clock)
    www, shop = (c for _, c in poller.checks)
    shop_key = TargetKey("acme", "application", "shop")

    async def cycle() -> None:
        await asyncio.gather(poller.check_once("acme", www), poller.check_once("acme", shop))

    clock.now += 60
    asyncio.run(cycle())
    first_failed = clock.now
    engine.tick(clock.now)
    assert engine.machine(shop_key).view().up, "one failed check does not determine"
    clock.now += 60
    asyncio.run(cycle())
    engine.tick(clock.now)
    view = engine.machine(shop_key).view()
    assert not view.up and view.outage_start == first_failed and view.determined_at == clock.now
    assert engine.machine(TargetKey("acme", "application", "www")).view().up
    # Application is its own service: the customer's connectivity union never sees it.
    services = engine.changes(clock.now).services
    assert services[("acme", "application")].up is False
    assert ("acme", "connectivity") in services and services[("acme", "connectivity")].outage_seconds == 0
    statuses = {s.check.id: s for s in poller.statuses()}
    assert statuses["shop"].failures == (("bad_status", 2),) and statuses["www"].failures == ()


def test_a_slow_application_does_not_delay_another(web: Nginx) -> None:
    with silent_listener() as hang:
        inv = inventory(f"{{id: slow, http: {{url: 'http://127.0.0.1:{hang}/'}}, timeout: 5s}}",
                        f"{{id: fast, http: {{url: 'http://127.0.0.1:{web.http}/ok'}}, timeout: 5s}}")
        seen: list[tuple[str, bool | None]] = []
        poller = ApplicationPoller(inv, lambda key, at, ok: seen.append((key.target, ok)), time.time,
                                   max_concurrency=2)
        slow, fast = (c for _, c in poller.checks)

        async def both() -> None:
            await asyncio.gather(poller.check_once("acme", slow), poller.check_once("acme", fast))

        asyncio.run(both())
    # Order, not time: the fast one's result was observed while the slow one was still waiting.
    assert seen == [("fast", True), ("slow", False)]
