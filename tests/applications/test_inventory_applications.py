"""`applications:` in the inventory: defaults from the customer's ping policy, overrides per check, located
errors, secrets only as references, and which services are billed."""

from __future__ import annotations

import pytest

from threenines.config.configfile import ConfigError
from threenines.config.inventory_load import parse_inventory_text
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
    ("[{id: w, http: {url: 'http://x/'}, smtp: {address: '192.0.2.1'}}]",
     "exactly one of http:, smtp:, imap:, pop3:, ftp:, tcp:"),
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


def test_mail_and_ftp_kinds_take_their_default_ports_from_the_tls_mode() -> None:
    inv = parse("""    applications:
      - {id: smtps, smtp: {address: "192.0.2.25", tls: implicit}}
      - {id: submission, smtp: {address: "192.0.2.25:587", tls: starttls}}
      - {id: imap, imap: {address: "192.0.2.25", starttls: true}}
      - {id: imaps, imap: {address: "192.0.2.25", tls: implicit, ca_file: /etc/ssl/ca.pem}}
      - {id: pop3, pop3: {address: "192.0.2.25"}}
      - {id: pop3s, pop3: {address: "[2001:db8::25]", tls: implicit, verify: false}}
      - {id: ftp, ftp: {address: "192.0.2.21", starttls: true, login: {username: anonymous}}}
      - {id: ftp-user, ftp: {address: "192.0.2.21:2121", login: {username: web, password: {env: FTP_PW}}}}
""")
    got = {a.id: a for a in inv.customers[0].applications}
    # RFC 8314 (SMTPS 465), RFC 3501/8314 (143, 993), RFC 1939/8314 (110, 995), RFC 959 (21).
    assert (got["smtps"].spec.port, got["smtps"].spec.implicit_tls, got["smtps"].spec.starttls) == (465, True, False)
    assert (got["submission"].spec.port, got["submission"].spec.starttls) == (587, True)
    assert (got["imap"].kind, got["imap"].spec.port, got["imap"].spec.starttls) == ("imap", 143, True)
    assert (got["imaps"].spec.port, got["imaps"].spec.tls.ca_file) == (993, "/etc/ssl/ca.pem")
    assert (got["pop3"].spec.port, got["pop3"].spec.tls) == (110, None)
    assert (got["pop3s"].spec.port, got["pop3s"].spec.tls.verify, got["pop3s"].address) == (995, False,
                                                                                            "[2001:db8::25]:995")
    assert (got["ftp"].spec.port, got["ftp"].spec.username, got["ftp"].spec.password) == (21, "anonymous", None)
    assert (got["ftp-user"].spec.port, got["ftp-user"].spec.password.env) == (2121, "FTP_PW")


@pytest.mark.parametrize(("body", "expected"), [
    ("[{id: f, ftp: {address: '192.0.2.21', tls: implicit}}]",
     "customers[0].applications[0].ftp.tls: FTP over implicit TLS is not supported: use starttls: true"),
    ("[{id: m, imap: {address: '192.0.2.25', starttls: true, tls: implicit}}]",
     "applications[0].imap.tls: give either starttls: true or tls:, not both"),
    ("[{id: m, pop3: {address: '192.0.2.25', tls: ssl}}]", "'ssl' is not one of: starttls, implicit"),
    ("[{id: m, pop3: {address: '192.0.2.25', ca_file: /x.pem}}]",
     "pop3.ca_file: ca_file: is for the TLS certificate check: add starttls: true or tls: implicit"),
    ("[{id: f, ftp: {address: '192.0.2.21', login: {username: web}}}]",
     "ftp.login.username: user 'web' needs a password: add password: {env: VARIABLE}"),
    ("[{id: f, ftp: {address: '192.0.2.21', login: {username: web, password: hunter2}}}]",
     "secrets are never written inline"),
    ("[{id: f, ftp: {address: '192.0.2.21', login: {username: 'a b', password: {env: X}}}}]",
     "ftp.login.username:"),
    ("[{id: w, imap: {address: '192.0.2.1'}, pop3: {address: '192.0.2.1'}}]",
     "exactly one of http:, smtp:, imap:, pop3:, ftp:, tcp:"),
])
def test_mail_and_ftp_errors_name_the_field_and_the_fix(body: str, expected: str) -> None:
    message = errors(f"    applications: {body}\n")
    assert expected in message
    assert "hunter2" not in message
