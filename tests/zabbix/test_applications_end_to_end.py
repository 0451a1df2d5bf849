"""Application checks through a real Zabbix 6.0: a real `threenines serve` checks a TCP service and an HTTPS site
on loopback; the generated template discovers both checks with the exporter's state, raises "application
unavailable" (never "service unavailable", never a billed SLA for a customer without applications_billable) when
the TCP service stops, names the failure reason, clears when it returns, and raises the certificate trigger once
the certificate's expiry falls within {$THREENINES.APP.CERT.DAYS}."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.applications.servers import SERVER_NAME, make_pki, nginx
from tests.foundation.exporter_process import sample, scrape, serve
from tests.support import wait_until
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.zabbix.api import ZabbixApi
from threenines.zabbix.sync import object_name

CUSTOMER = "apps_e2e"  # not another test's id: tests/zabbix share one Zabbix
HOST = "threenines exporter apps-e2e"
SCRAPE = 2  # Zabbix scrape interval of /metrics
DB = f'threenines.application.up["{CUSTOMER}","db"]'
WWW = f'threenines.application.up["{CUSTOMER}","www"]'
EXPIRY = f'threenines.application.certificate_expiry["{CUSTOMER}","www"]'
REFUSED = f'threenines.application.failures["{CUSTOMER}","db","connect_refused"]'


class Listener:
    """A TCP service on 127.0.0.1 that the kernel accepts for (the tcp check only connects); stop() closes it, so
    connections are refused, start() listens on the same port again."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.sock, self.port = sock, sock.getsockname()[1]

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@contextlib.contextmanager
def listener() -> Iterator[Listener]:
    service = Listener()
    try:
        yield service
    finally:
        service.stop()


def _inventory(tcp_port: int, https_port: int, ca: Path) -> str:
    return f"""
customers:
  - id: {CUSTOMER}
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@apps.example}}]}}
    ping: {{interval: 2s, threshold: 2, packets: 1, timeout: 500ms}}
    ports:
      - {{id: lo-port, address: 127.0.62.1}}
    applications:
      - id: db
        tcp: {{address: '127.0.0.1:{tcp_port}'}}
        interval: 1s
        threshold: 2
        timeout: 500ms
      - id: www
        http: {{url: 'https://127.0.0.1:{https_port}/ok', ca_file: '{ca}', server_name: {SERVER_NAME}}}
        interval: 2s
        timeout: 1s
"""


def _items(api: ZabbixApi, hostid: str, key: str) -> dict[str, dict]:
    found = api.call("item.get", {"output": ["key_", "lastvalue", "lastclock", "state", "error"],
                                  "hostids": [hostid], "search": {"key_": key}, "startSearch": True})
    return {i["key_"]: i for i in found}


def _value(api: ZabbixApi, hostid: str, key: str) -> str | None:
    item = _items(api, hostid, key.split("[")[0]).get(key)
    return item["lastvalue"] if item and item["lastclock"] != "0" else None


def _problems(api: ZabbixApi, hostid: str, **tags: str) -> list[dict]:
    return api.call("problem.get", {"output": ["name", "clock", "r_clock"], "selectTags": "extend",
                                    "hostids": [hostid], "recent": False,
                                    "tags": [{"tag": k, "operator": 1, "value": v} for k, v in tags.items()]})


def test_zabbix_shows_application_checks_with_the_exporters_state_reason_and_certificate(
        zabbix: ZabbixStack, api: ZabbixApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")
    pki = make_pki(tmp_path)  # the good certificate expires in 20 days
    with nginx(tmp_path / "nginx", pki) as web, listener() as tcp:
        config = tmp_path / "inventory.yml"
        config.write_text(_inventory(tcp.port, web.https, pki.ca))
        proc, http_port = serve(tmp_path, config)
        with proc:
            code = main(["zabbix-sync", "--config", str(config), "--url", zabbix.api_url, "--user", "Admin",
                         "--exporter-url", f"http://127.0.0.1:{http_port}/metrics", "--host-name", HOST,
                         "--scrape-interval", f"{SCRAPE}s", "--import-templates"])
            assert code == 0, capsys.readouterr()
            [host] = api.call("host.get", {"output": ["hostid"], "filter": {"host": HOST}})
            hostid = host["hostid"]

            # Discovery, then the exporter's values: both checks up, the certificate's expiry as served.
            wait_until(lambda: _value(api, hostid, DB) is not None and _value(api, hostid, WWW) is not None
                       and _value(api, hostid, EXPIRY) is not None, 90, 1,
                       "Zabbix to discover the application checks and fetch their state")
            text = scrape(http_port)
            assert int(_value(api, hostid, DB) or -1) == sample(
                text, "threenines_service_up", customer=CUSTOMER, service="application", target="db") == 1
            assert int(_value(api, hostid, WWW) or -1) == 1
            served = sample(text, "threenines_application_certificate_expiry_timestamp_seconds", customer=CUSTOMER,
                            target="www")
            assert served == pki.good_not_after
            assert float(_value(api, hostid, EXPIRY) or 0) == pytest.approx(served, abs=1)
            # The contract-target discovery leaves applications to their own rule.
            assert _items(api, hostid, "threenines.service.up").keys() == {
                f'threenines.service.up["{CUSTOMER}","connectivity","lo-port"]'}
            # Not billable: zabbix-sync made the connectivity SLA service only, none for the applications.
            names = {s["name"] for s in api.call("service.get", {"output": ["name"], "filter": {
                "name": [object_name(CUSTOMER, "connectivity"), object_name(CUSTOMER, "application")]}})}
            assert names == {object_name(CUSTOMER, "connectivity")}
            # 20 days left, the default threshold is 14: no certificate problem after a few more scrapes.
            first = int(_items(api, hostid, "threenines.application.certificate_expiry")[EXPIRY]["lastclock"])
            wait_until(lambda: int(_items(api, hostid, "threenines.application.certificate_expiry")[EXPIRY][
                "lastclock"]) >= first + 2 * SCRAPE, 20, 0.5, "more certificate values")
            assert _problems(api, hostid, customer=CUSTOMER) == []

            # The TCP service stops: the exporter determines the application outage, Zabbix raises it as an
            # application problem (not the provider's outage) and names the reason.
            tcp.stop()
            problem = wait_until(lambda: _problems(api, hostid, customer=CUSTOMER, threenines="application"),
                                 30, 0.5, "the application problem")[0]
            assert problem["name"] == f"{CUSTOMER} application db (tcp): unavailable"
            tags = {t["tag"]: t["value"] for t in problem["tags"]}
            assert (tags["service"], tags["target"], tags["sla"]) == ("application", "db", f"{CUSTOMER}/application")
            determined = sample(scrape(http_port), "threenines_service_determined_timestamp_seconds",
                                customer=CUSTOMER, service="application", target="db")
            assert determined and determined - 1 <= int(problem["clock"]) <= determined + SCRAPE + 5
            assert _problems(api, hostid, customer=CUSTOMER, threenines="outage") == []
            refused = wait_until(lambda: (lambda v: v if v is not None and int(v) > 0 else None)(
                _value(api, hostid, REFUSED)), 90, 1, "the connect_refused reason item with failures")
            print(f"connect_refused failures in the last scrape: {refused}")

            # The service returns: the problem clears.
            tcp.start()
            wait_until(lambda: _problems(api, hostid, customer=CUSTOMER, threenines="application") == [], 30, 0.5,
                       "the application problem to resolve")

            # With the threshold at 30 days (a host macro with the check's context), the 20-day certificate raises
            # the certificate trigger.
            api.call("usermacro.create", {"hostid": hostid, "macro": '{$THREENINES.APP.CERT.DAYS:"www"}',
                                          "value": "30"})
            cert = wait_until(lambda: _problems(api, hostid, customer=CUSTOMER, threenines="certificate"), 30, 0.5,
                              "the certificate problem")[0]
            assert cert["name"] == f"{CUSTOMER} application www: TLS certificate expires soon"
