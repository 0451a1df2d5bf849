"""Generate Alertmanager routes and receivers from the inventory: one receiver per customer whose only integration
is the exporter's delivery webhook (`POST /alertmanager/deliver`, beside the audit webhook, same token): the
exporter records the dispatch, sends the messages to the customer's designated contacts itself and proves each
delivery (threenines.notify, docs/alerting.md). The NOC's receivers stay Alertmanager-native, with the templates
this module also writes beside the config (`write`).

Secrets are never written into the generated file. Alertmanager 0.25 (Debian 12) reads every secret we need
from a file (`smtp_auth_password_file`, `routing_key_file`, `http_config.authorization.credentials_file`) but
does not expand environment variables in its configuration. So a `{file: PATH}` reference becomes that path,
and an `{env: VAR}` reference becomes `<secrets_dir>/VAR`: `write_secret_files()` (the command's
`--write-secret-files`) materialises those from the environment with mode 0600, or the operator's
orchestration (systemd LoadCredential=, a Kubernetes secret volume) puts them there.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from threenines.config.configfile import format_duration
from threenines.config.inventory import Customer, Inventory
from threenines.config.secrets import SecretRef

RECEIVER_PREFIX = "customer-"  # a customer's receiver: this prefix and the customer id
AUDIENCE_CUSTOMER = 'audience="customer"'
WATCHDOG_ALERT = "ThreeninesWatchdog"
NOC_RECEIVER = "noc"
WATCHDOG_RECEIVER = "watchdog"
TEMPLATE_GLOB = "templates/*.tmpl"
TEMPLATE_DIR = "templates"
# The NOC's texts (package data) and the generated runbook base, written beside alertmanager.yml.
TEMPLATE_FILE = "threenines.tmpl"
RUNBOOK_TEMPLATE_FILE = "threenines-runbooks.tmpl"
# Where the Debian package installs docs/*.md; a team publishes docs/ on its wiki and passes --runbook-base-url.
DEFAULT_RUNBOOK_BASE = "file:///usr/share/doc/threenines/"
DELIVERY_PATH = "deliver"  # beside the audit webhook: /alertmanager/webhook -> /alertmanager/deliver


class GeneratorError(Exception):
    """The inventory cannot be turned into an Alertmanager config; the message names what to add."""


@dataclass(frozen=True)
class Options:
    """Choices that are not in the inventory. Timings are seconds; see docs/alerting.md for why these values."""

    secrets_dir: str = "/etc/alertmanager/secrets"
    noc_emails: tuple[str, ...] = ()
    noc_webhook: str | None = None
    watchdog_url: str | None = None
    # A new alert group waits group_wait for companions before its first dispatch: short, because with one
    # group per (alertname, customer, service, target) there is little to batch and it adds to the promise.
    group_wait: float = 30.0
    # Changes to a group already notified (resolution, a second alert) go out after group_interval; it is also
    # the flush timeout within which a failing integration is retried.
    group_interval: float = 60.0
    # Reminders while an outage stays open (to the NOC; the exporter sends a customer one message per outage
    # event and contact, so a repeat to the delivery webhook adds nothing).
    repeat_interval: float = 4 * 3600.0
    # Runbook links in the NOC's messages: this base + the alert's runbook_url without its leading "docs/".
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE
    # HA: the other replica exporters (base URLs). Each customer receiver posts to every replica, so either one
    # alone still takes the notification; the replicas agree which one sends (threenines.notify.peer).
    replica_urls: tuple[str, ...] = ()


def receiver_name(customer_id: str) -> str:
    return RECEIVER_PREFIX + customer_id


def secret_path(ref: SecretRef, secrets_dir: str) -> str:
    """The file Alertmanager reads the secret from (never the secret itself)."""
    if ref.file is not None:
        return ref.file
    assert ref.env is not None
    return str(Path(secrets_dir) / ref.env)


def _bearer(ref: SecretRef | None, options: Options) -> dict[str, Any]:
    if ref is None:
        return {}
    authorization = {"type": "Bearer", "credentials_file": secret_path(ref, options.secrets_dir)}
    return {"http_config": {"authorization": authorization}}


def check_contacts(customer: Customer, inventory: Inventory) -> None:
    """GeneratorError when a contact's channel has nothing to send through (the exporter would fail every time)."""
    for contact in customer.contacts.notify:
        if contact.kind == "email" and inventory.notification.smtp is None:
            raise GeneratorError(
                f"customer {customer.id} has an e-mail contact but the inventory has no notification.smtp: add "
                "smtp: {smarthost: HOST:PORT, from: ADDRESS}"
            )
        if contact.kind in ("sms", "phone") and inventory.notification.sms_gateway is None:
            raise GeneratorError(
                f"customer {customer.id} has a {contact.kind} contact but the inventory has no "
                "notification.sms_gateway: add sms_gateway: {url: URL, token: {env: VAR}}"
            )


def delivery_url(inventory: Inventory) -> str:
    """The exporter's delivery endpoint: beside the audit webhook (same exporter, same token)."""
    audit = inventory.notification.audit_webhook
    if audit is None:
        raise GeneratorError(
            "the inventory has no notification.audit_webhook: every customer receiver posts to the exporter, which "
            "records and delivers (add audit_webhook: {url: http://EXPORTER:9839/alertmanager/webhook, token: "
            "{env: VAR}}; deliveries go to /alertmanager/deliver beside it)"
        )
    return urllib.parse.urljoin(audit.url, DELIVERY_PATH)


def delivery_integration(inventory: Inventory, options: Options) -> dict[str, Any]:
    audit = inventory.notification.audit_webhook
    # send_resolved: the customer is told when it ends; max_alerts 0: never truncate.
    return {"url": delivery_url(inventory), "send_resolved": True, "max_alerts": 0,
            **_bearer(audit.token if audit else None, options)}


def customer_receiver(customer: Customer, inventory: Inventory, options: Options) -> dict[str, Any]:
    check_contacts(customer, inventory)
    first = delivery_integration(inventory, options)
    replicas = [{**first, "url": url.rstrip("/") + "/alertmanager/" + DELIVERY_PATH} for url in options.replica_urls]
    return {"name": receiver_name(customer.id), "webhook_configs": [first, *replicas]}


def _noc_receiver(inventory: Inventory, options: Options) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": NOC_RECEIVER}
    if options.noc_emails:
        if inventory.notification.smtp is None:
            raise GeneratorError("--noc-email needs notification.smtp in the inventory")
        receiver["email_configs"] = [
            {"to": address, "send_resolved": True, "headers": {"Subject": '{{ template "threenines.subject" . }}'},
             "text": '{{ template "threenines.text" . }}'}
            for address in options.noc_emails
        ]
    if options.noc_webhook:
        receiver["webhook_configs"] = [{"url": options.noc_webhook, "send_resolved": True}]
    return receiver


def _global(inventory: Inventory, options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {"resolve_timeout": "5m"}
    smtp = inventory.notification.smtp
    if smtp is not None:
        out["smtp_smarthost"] = smtp.smarthost
        out["smtp_from"] = smtp.sender
        out["smtp_require_tls"] = smtp.require_tls
        if smtp.username is not None:
            out["smtp_auth_username"] = smtp.username
        if smtp.password is not None:
            out["smtp_auth_password_file"] = secret_path(smtp.password, options.secrets_dir)
    return out


def generate(inventory: Inventory, options: Options) -> dict[str, Any]:
    """The Alertmanager configuration as plain data."""
    customer_routes = [
        # continue: the NOC catch-all below sees customer pages too.
        {"receiver": receiver_name(c.id), "matchers": [AUDIENCE_CUSTOMER, f'customer="{c.id}"'], "continue": True}
        for c in inventory.customers
    ]
    watchdog: dict[str, Any] = {"name": WATCHDOG_RECEIVER}
    if options.watchdog_url:
        watchdog["webhook_configs"] = [{"url": options.watchdog_url, "send_resolved": False}]
    return {
        "global": _global(inventory, options),
        "templates": [TEMPLATE_GLOB],
        "route": {
            "receiver": NOC_RECEIVER,
            "group_by": ["alertname", "customer", "service", "target"],
            "group_wait": format_duration(options.group_wait),
            "group_interval": format_duration(options.group_interval),
            "repeat_interval": format_duration(options.repeat_interval),
            "routes": [
                # The dead man's switch expects a heartbeat every minute, on its own route and nowhere else.
                {"receiver": WATCHDOG_RECEIVER, "matchers": [f'alertname="{WATCHDOG_ALERT}"'],
                 "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"},
                *customer_routes,
                {"receiver": NOC_RECEIVER},
            ],
        },
        "receivers": [
            _noc_receiver(inventory, options),
            watchdog,
            *(customer_receiver(c, inventory, options) for c in inventory.customers),
        ],
    }


HEADER = """\
# Generated by `threenines alertmanager-config` from {source}; do not edit by hand: change the inventory
# (customers[].contacts, notification:) and regenerate. Timings and routing are explained in docs/alerting.md.
# Secrets are files (*_file, credentials_file); none is written here.
"""


def render(inventory: Inventory, options: Options, source: str | None = None) -> str:
    text = yaml.safe_dump(generate(inventory, options), sort_keys=False, default_flow_style=False, width=120,
                          allow_unicode=True)
    return HEADER.format(source=source or inventory.source) + text


def templates(options: Options) -> dict[str, str]:
    """The template files Alertmanager loads through TEMPLATE_GLOB, by file name."""
    static = resources.files("threenines").joinpath("templates", TEMPLATE_FILE).read_text(encoding="utf-8")
    base = options.runbook_base_url.replace("{{", "").replace("}}", "")
    runbooks = ("{{/* Generated by `threenines alertmanager-config` (--runbook-base-url); do not edit. */}}\n"
                f'{{{{ define "threenines.runbook_base" }}}}{base}{{{{ end }}}}\n')
    return {TEMPLATE_FILE: static, RUNBOOK_TEMPLATE_FILE: runbooks}


def write(path: str | Path, text: str, options: Options) -> list[Path]:
    """Write the config and, beside it in templates/, the templates it references (Alertmanager resolves
    `templates:` relative to the config file; without them every NOC e-mail fails at run time). All or nothing:
    GeneratorError, and nothing written, when any of it cannot be written."""
    target = Path(path)
    folder = target.parent / TEMPLATE_DIR
    files = [(folder / name, content) for name, content in templates(options).items()] + [(target, text)]
    staged: list[tuple[Path, Path]] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for final, content in files:
            temporary = final.with_name(f".{final.name}.tmp")
            temporary.write_text(content, encoding="utf-8")
            staged.append((temporary, final))
        for temporary, final in staged:
            os.replace(temporary, final)
    except OSError as err:
        for temporary, _ in staged:
            with contextlib.suppress(OSError):
                temporary.unlink()
        raise GeneratorError(f"cannot write {err.filename or target}: {err.strerror or err}; nothing was written "
                             f"(the config needs its templates in {folder})") from None
    return [final for final, _ in files]


def env_secrets(inventory: Inventory) -> Iterator[SecretRef]:
    """Every environment-variable secret the generated config reads from a file: the exporter's webhook token and
    the relay's password (the NOC's e-mail). The contacts' secrets and the gateway's token are the exporter's,
    which reads them from its own environment or files when it delivers."""
    refs: list[SecretRef | None] = [
        inventory.notification.audit_webhook.token if inventory.notification.audit_webhook else None,
        inventory.notification.smtp.password if inventory.notification.smtp else None,
    ]
    seen: set[str] = set()
    for ref in refs:
        if ref is not None and ref.env is not None and ref.env not in seen:
            seen.add(ref.env)
            yield ref


def write_secret_files(inventory: Inventory, options: Options) -> list[str]:
    """Write each env-referenced secret to <secrets_dir>/VAR with mode 0600; returns the paths (not values)."""
    directory = Path(options.secrets_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for ref in env_secrets(inventory):
        path = Path(secret_path(ref, options.secrets_dir))
        value = ref.resolve()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file
        written.append(str(path))
    return written
