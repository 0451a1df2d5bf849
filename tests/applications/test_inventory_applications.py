"""`applications:` in the inventory: defaults from the customer's ping policy, overrides per check, located
errors, secrets only as references, and which services are billed."""

from __future__ import annotations

import pytest

from threenines.config.configfile import ConfigError
from threenines.config.inventory import parse_inventory_text
from threenines.contract.engine import specs_from_inventory

HEAD = """customers:
  - id: acme
    timezone: UTC
    contacts: {version: '1', notify: [{email: noc@acme.example}]}
    ping: {interval: 2m, threshold: 3}
    ports: [{id: port-a, address: 192.0.2.10}]
"""


def parse(body: str):
    return parse_inventory_text(HEAD + body, "inv.yml")


def errors(body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(body)
    return str(caught.value)


def test_the_issue_shape_parses_with_the_customers_cadence_and_per_check_overrides() -> None:
    inv = parse("""    applications:
      - id: www
        http: {url: "https://www.customer.example/", expect_status: [200, 301]}
      - id: mail
        smtp: {address: "192.0.2.25:25", starttls: true}
      - id: files
        tcp: {address: "192.0.2.21:21", expect: "^220"}
        interval: 1m
        threshold: 2
        timeout: 5s
""")
    www, mail, files = inv.customers[0].applications
    assert (www.kind, www.spec.expect_status, www.spec.tls.verify, www.spec.port) == ("http", (200, 301), True, 443)
    assert (www.policy.interval, www.policy.threshold, www.policy.timeout) == (120.0, 3, 10.0)
    assert (mail.kind, mail.spec.host, mail.spec.port, mail.spec.starttls) == ("smtp", "192.0.2.25", 25, True)
    assert (files.policy.interval, files.policy.threshold, files.policy.timeout) == (60.0, 2, 5.0)
    specs = {s.key: s for s in specs_from_inventory(inv)}
    assert specs[("acme", "application", "files")].threshold == 2
    assert inv.customers[0].services == ("connectivity",)  # applications are not billed by default


def test_applications_billable_makes_them_a_billed_service() -> None:
    inv = parse("    applications_billable: true\n    applications: [{id: w, http: {url: 'http://192.0.2.1/'}}]\n")
    assert inv.customers[0].services == ("connectivity", "application")


@pytest.mark.parametrize(("body", "expected"), [
    ("[{id: w, http: {url: 'ftp://x/'}}]", "inv.yml:7 customers[0].applications[0].http.url:"),
    ("[{id: w, http: {url: 'http://x/'}, smtp: {address: '192.0.2.1'}}]", "exactly one of http:, smtp:, tcp:"),
    ("[{id: w, tcp: {address: '192.0.2.1'}}]", "has no port"),
    ("[{id: w, http: {url: 'http://x/', body: '(['}}]", "is not a regular expression"),
    ("[{id: w, http: {url: 'http://x/', verify: false}}]", "verify: is for https:// URLs"),
    ("[{id: w, http: {url: 'http://x/'}, interval: 5s, timeout: 10s}]", "must be shorter than its interval"),
    ("[{id: w, http: {url: 'http://u:p@x/'}}]", "credentials are never written in the URL"),
    ("[{id: w, http: {url: 'https://x/', basic_auth: {username: u, password: hunter2}}}]",
     "secrets are never written inline"),
    ("[{id: w, http: {url: 'http://x/'}}, {id: w, smtp: {address: '192.0.2.1'}}]", "duplicate application id 'w'"),
])
def test_errors_name_file_line_field_and_fix(body: str, expected: str) -> None:
    message = errors(f"    applications: {body}\n")
    assert expected in message
    assert "hunter2" not in message


def test_a_basic_auth_password_is_a_reference() -> None:
    inv = parse("    applications: [{id: w, http: {url: 'https://x/', basic_auth: {username: u, password: "
                "{env: WWW_PASSWORD}}}}]\n")
    assert inv.customers[0].applications[0].spec.password.env == "WWW_PASSWORD"
