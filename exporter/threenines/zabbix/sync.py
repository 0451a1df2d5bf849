"""Inventory → Zabbix objects, idempotently: plan the differences, print them (--dry-run) or apply them.

What is managed (everything else in Zabbix is left alone):
- host group `threenines`; the templates (imported when missing or changed, with --import-templates);
- one exporter host linked to `threenines by HTTP` (macros: /metrics URL, scrape interval, optional basic auth);
- with --prometheus-url, one host linked to `threenines merged by Prometheus`: the replica exporters' evidence
  merged by the recording rules (macros: Prometheus URL, query interval, optional Authorization header);
- with --native-ping, one host per customer port linked to `threenines contract ping` with the port's policy;
- per customer and service: a Zabbix service fed by problems tagged `sla=<customer>/<service>` (only the
  contract-outage triggers carry that tag) — with --prometheus-url only the merged host's (`vantage=merged`
  too), so the replicas' own hosts stay the per-vantage view and never feed it — and an SLA: the contract's
  objective, monthly, in the contract time zone, with the exclusions ledger's windows as excluded downtimes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from threenines.config.inventory import Customer, Inventory, Port
from threenines.zabbix.api import ZabbixApi, ZabbixError
from threenines.zabbix.templates import (
    HTTP_TEMPLATE,
    MERGED,
    MERGED_TEMPLATE,
    PING_TEMPLATE,
    SLA_TAG,
    VANTAGE_TAG,
    template_files,
)

GROUP = "threenines"
TEMPLATES_MACRO = "{$THREENINES.TEMPLATES.SHA256}"
USER_MACRO = "{$THREENINES.USER}"
PASSWORD_MACRO = "{$THREENINES.PASSWORD}"
PROMETHEUS_URL_MACRO = "{$THREENINES.PROMETHEUS.URL}"
PROMETHEUS_INTERVAL_MACRO = "{$THREENINES.PROMETHEUS.INTERVAL}"
PROMETHEUS_AUTHORIZATION_MACRO = "{$THREENINES.PROMETHEUS.AUTHORIZATION}"
MONTHLY = "2"
SLA_ENABLED = "1"
SECRET_MACRO = "1"
# A secret macro's companion, beside it on the host: the salted scrypt digest of the value written (never the
# value), so a rotated password or token is seen and rewritten although Zabbix never returns a secret's value.
FINGERPRINT_SUFFIX = ".FINGERPRINT}"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
FINGERPRINT_NOTE = ("threenines zabbix-sync: salted scrypt digest of the secret macro beside it (never the secret); "
                    "a different secret rewrites both")
AGENT_INTERFACE = "1"


@dataclass(frozen=True)
class ExcludedDowntime:
    """An agreed window that does not count against the SLA (Zabbix takes plain [from, to) periods)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class SyncOptions:
    exporter_url: str | None  # None: no exporter host (only the merged one)
    host_name: str = "threenines exporter"
    scrape_interval: str = "1m"
    exporter_user: str | None = None  # basic auth on /metrics (the exporter's --web.config.file)
    exporter_password: str | None = None  # the secret itself; never printed
    native_ping: bool = False
    import_templates: bool = False
    effective_date: int | None = None  # SLA effective date; default: start of the current month (contract zone)
    prometheus_url: str | None = None  # a merged host, and services fed by it alone
    merged_host_name: str = "threenines merged"
    prometheus_interval: str = "1m"
    prometheus_authorization: str | None = None  # the Authorization header's value (a secret); never printed

    @property
    def marker_host(self) -> str:
        """The host that carries the imported templates' digest."""
        return self.host_name if self.exporter_url is not None else self.merged_host_name


def authorization(user: str | None = None, password: str | None = None, token: str | None = None) -> str | None:
    """The Authorization header for Prometheus: basic auth (its web config) or a bearer token (a proxy)."""
    if token:
        return f"Bearer {token}"
    if user:
        if not password:
            # "Basic user:" would be refused by Prometheus as 401 on every query, which Zabbix shows only as a
            # failing item: the caller (zabbix-sync) refuses the pairing before it gets here.
            raise ValueError("a Prometheus basic-auth user needs its password")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def fingerprint_macro(macro: str) -> str:
    """{$A.B} -> {$A.B.FINGERPRINT}: where the fingerprint of secret macro `macro` is kept."""
    return macro[:-1] + FINGERPRINT_SUFFIX


def fingerprint(secret: str, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<digest hex>`: a fresh random salt unless one is given (to check a stored one)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def fingerprint_matches(stored: str | None, secret: str) -> bool:
    parts = (stored or "").split("$")
    if len(parts) != 3 or parts[0] != "scrypt":
        return False
    try:
        salt = bytes.fromhex(parts[1])
    except ValueError:
        return False
    return hmac.compare_digest(fingerprint(secret, salt), stored or "")


@dataclass(frozen=True)
class Change:
    action: str  # create | update | import
    kind: str  # hostgroup | template | host | service | sla
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    object_id: str = ""

    def describe(self) -> str:
        shown = {k: _shown(k, v) for k, v in self.fields.items()}
        detail = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.action} {self.kind} {self.name!r}" + (f": {detail}" if detail else "")


def _shown(key: str, value: Any) -> Any:
    if key == "secret_macros":
        return "{" + ", ".join(f"{name}: <secret>" for name in value) + "}"
    if key == "excluded_downtimes":
        return "[" + "; ".join(f"{d.name} {_utc(d.start)}..{_utc(d.end)}" for d in value) + "]"
    return value


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%MZ")


def sla_tag_value(customer: str, service: str) -> str:
    return f"{customer}/{service}"


def object_name(customer: str, service: str) -> str:
    return f"threenines {customer} {service}"


def ping_host_name(customer: Customer, port: Port) -> str:
    # Zabbix host names allow letters, digits, space, '.', '_' and '-'; inventory ids may also hold ':'.
    return re.sub(r"[^A-Za-z0-9 ._-]", "_", f"threenines ping {customer.id} {port.id}")


def month_start(now: float, zone: ZoneInfo) -> int:
    local = datetime.fromtimestamp(now, zone)
    return int(datetime(local.year, local.month, 1, tzinfo=zone).timestamp())


def templates_sha256() -> str:
    return hashlib.sha256("".join(t.text for t in template_files()).encode()).hexdigest()


def _slo_text(objective: float) -> str:
    return f"{objective * 100:.4f}"


# ---------------------------------------------------------------------------------------------------
# Desired state, computed from the inventory alone (no I/O)


@dataclass(frozen=True)
class Desired:
    hosts: dict[str, dict[str, Any]]
    services: dict[str, dict[str, Any]]
    slas: dict[str, dict[str, Any]]


def desired_state(inventory: Inventory, options: SyncOptions, now: float,
                  downtimes: dict[tuple[str, str], list[ExcludedDowntime]] | None = None) -> Desired:
    downtimes = downtimes or {}
    marker = {TEMPLATES_MACRO: templates_sha256()} if options.import_templates else {}
    hosts: dict[str, dict[str, Any]] = {}
    if options.exporter_url is not None:
        hosts[options.host_name] = {
            "template": HTTP_TEMPLATE,
            "macros": {"{$THREENINES.URL}": options.exporter_url, "{$THREENINES.INTERVAL}": options.scrape_interval,
                       **({USER_MACRO: options.exporter_user} if options.exporter_user else {}),
                       **(marker if options.marker_host == options.host_name else {})},
            "secret_macros": {PASSWORD_MACRO: options.exporter_password} if options.exporter_password else {},
            "interface": None,
        }
    if options.prometheus_url is not None:
        hosts[options.merged_host_name] = {
            "template": MERGED_TEMPLATE,
            "macros": {PROMETHEUS_URL_MACRO: options.prometheus_url.rstrip("/"),
                       PROMETHEUS_INTERVAL_MACRO: options.prometheus_interval,
                       **(marker if options.marker_host == options.merged_host_name else {})},
            "secret_macros": ({PROMETHEUS_AUTHORIZATION_MACRO: options.prometheus_authorization}
                              if options.prometheus_authorization else {}),
            "interface": None,
        }
    if options.native_ping:
        for customer, port in inventory.ports():
            policy = port.policy
            hosts[ping_host_name(customer, port)] = {
                "template": PING_TEMPLATE,
                "macros": {
                    "{$THREENINES.PING.INTERVAL}": f"{int(policy.interval)}s",
                    "{$THREENINES.PING.PACKETS}": str(policy.packets),
                    "{$THREENINES.PING.PACKET_INTERVAL}": str(max(20, round(policy.packet_interval * 1000))),
                    "{$THREENINES.PING.TIMEOUT}": str(max(50, round(policy.timeout * 1000))),
                    "{$THREENINES.PING.MISSES}": f"#{policy.threshold}",
                    "{$THREENINES.CUSTOMER}": customer.id,
                    "{$THREENINES.TARGET}": port.id,
                },
                "secret_macros": {},
                "interface": port.address,
            }
    services: dict[str, dict[str, Any]] = {}
    slas: dict[str, dict[str, Any]] = {}
    # With replica exporters each replica's host raises the same sla tag: taken together they would merge by
    # `any` whatever the policy, and a dead replica's last state would linger. The merged host's problems carry
    # vantage=merged as well, and a 6.0 service takes a problem only when it has every one of its problem tags.
    merged_only = [{"tag": VANTAGE_TAG, "operator": "0", "value": MERGED}] if options.prometheus_url else []
    for customer in inventory.customers:
        for service in customer.services:
            tag = sla_tag_value(customer.id, service)
            name = object_name(customer.id, service)
            services[name] = {
                "tags": [{"tag": SLA_TAG, "value": tag}, {"tag": "customer", "value": customer.id},
                         {"tag": "service", "value": service}],
                "problem_tags": [{"tag": SLA_TAG, "operator": "0", "value": tag}, *merged_only],
            }
            slas[name] = {
                "slo": _slo_text(customer.objective),
                "period": MONTHLY,
                "timezone": customer.timezone,
                "status": SLA_ENABLED,
                "service_tags": [{"tag": SLA_TAG, "operator": "0", "value": tag}],
                "excluded_downtimes": sorted(downtimes.get((customer.id, service), []),
                                             key=lambda d: (d.start, d.end, d.name)),
                "description": f"{customer.name}: {service}, objective {customer.objective:.4%} per calendar "
                               f"month in {customer.timezone} (threenines)",
                "effective_date": options.effective_date if options.effective_date is not None
                else month_start(now, customer.zone),
            }
    return Desired(hosts, services, slas)


def downtimes_from_ledger(inventory: Inventory, ledger: Any, window: tuple[float, float]
                          ) -> dict[tuple[str, str], list[ExcludedDowntime]]:
    """Expand the exclusions ledger (threenines.config.exclusions.Exclusions) into Zabbix excluded downtimes."""
    out: dict[tuple[str, str], list[ExcludedDowntime]] = {}
    for customer in inventory.customers:
        for service in customer.services:
            rows = []
            for exclusion, (start, end) in ledger.windows(customer.id, service, window, customer.zone):
                label = f"{exclusion.id} ({exclusion.reason})"
                if exclusion.rrule:
                    label += " " + datetime.fromtimestamp(start, customer.zone).strftime("%Y-%m-%d")
                rows.append(ExcludedDowntime(label[:255], int(start), int(end)))
            out[(customer.id, service)] = rows
    return out


# ---------------------------------------------------------------------------------------------------
# Planning against what Zabbix holds


class Syncer:
    def __init__(self, api: ZabbixApi, desired: Desired, options: SyncOptions) -> None:
        self.api = api
        self.desired = desired
        self.options = options

    def plan(self) -> list[Change]:
        changes: list[Change] = []
        groups = self.api.call("hostgroup.get", {"output": ["groupid"], "filter": {"name": [GROUP]}})
        if not groups:
            changes.append(Change("create", "hostgroup", GROUP))
        changes += self._plan_templates()
        changes += self._plan_hosts()
        changes += self._plan_services()
        changes += self._plan_slas()
        return changes

    def _template_ids(self) -> dict[str, str]:
        found = self.api.call("template.get", {"output": ["templateid", "host"],
                                               "filter": {"host": [HTTP_TEMPLATE, PING_TEMPLATE, MERGED_TEMPLATE]}})
        return {t["host"]: t["templateid"] for t in found}

    def _plan_templates(self) -> list[Change]:
        present = self._template_ids()
        needed = {h["template"] for h in self.desired.hosts.values()}
        if not self.options.import_templates:
            missing = sorted(needed - present.keys())
            if missing:
                raise ZabbixError(f"template(s) {', '.join(missing)} not in Zabbix: import zabbix_templates/*.yaml "
                                  "(Data collection → Templates → Import) or pass --import-templates")
            return []
        marker = self._host_macros(self.options.marker_host).get(TEMPLATES_MACRO)
        if needed <= present.keys() and marker == templates_sha256():
            return []
        return [Change("import", "template", t.name, {"file": t.filename}) for t in template_files()]

    def _host_macros(self, host: str) -> dict[str, str]:
        found = self.api.call("host.get", {"output": ["hostid"], "filter": {"host": [host]}, "selectMacros": "extend"})
        return {m["macro"]: m.get("value", "") for m in found[0]["macros"]} if found else {}

    def _plan_hosts(self) -> list[Change]:
        names = list(self.desired.hosts)
        existing = {h["host"]: h for h in self.api.call("host.get", {
            "output": ["hostid", "host"], "filter": {"host": names}, "selectMacros": "extend",
            "selectParentTemplates": ["host"], "selectGroups": ["name"], "selectInterfaces": "extend"})}
        changes = []
        for name, want in self.desired.hosts.items():
            have = existing.get(name)
            if have is None:
                changes.append(Change("create", "host", name, {k: v for k, v in want.items() if v}))
                continue
            diff: dict[str, Any] = {}
            if want["template"] not in {t["host"] for t in have["parentTemplates"]}:
                diff["template"] = want["template"]
            if GROUP not in {g["name"] for g in have["groups"]}:
                diff["group"] = GROUP
            macros = {m["macro"]: m for m in have["macros"]}
            wrong = {k: v for k, v in want["macros"].items() if macros.get(k, {}).get("value") != v}
            if wrong:
                diff["macros"] = wrong
            # A secret macro's value is write-only in Zabbix: it is rewritten when missing, not secret, or when
            # its companion fingerprint does not match the value wanted (rotated, or written before fingerprints).
            rewrite = {k: v for k, v in want["secret_macros"].items()
                       if macros.get(k, {}).get("type") != SECRET_MACRO
                       or not fingerprint_matches(macros.get(fingerprint_macro(k), {}).get("value"), v)}
            if rewrite:
                diff["secret_macros"] = rewrite
            if want["interface"] and want["interface"] not in {i["ip"] for i in have["interfaces"]}:
                diff["interface"] = want["interface"]
            if diff:
                changes.append(Change("update", "host", name, diff, have["hostid"]))
        return changes

    def _plan_services(self) -> list[Change]:
        existing = {s["name"]: s for s in self.api.call("service.get", {
            "output": ["serviceid", "name"], "filter": {"name": list(self.desired.services)},
            "selectTags": "extend", "selectProblemTags": "extend"})}
        changes = []
        for name, want in self.desired.services.items():
            have = existing.get(name)
            if have is None:
                changes.append(Change("create", "service", name, want))
                continue
            diff = {}
            if _tagset(have["tags"]) != _tagset(want["tags"]):
                diff["tags"] = want["tags"]
            if _tagset(have["problem_tags"], op=True) != _tagset(want["problem_tags"], op=True):
                diff["problem_tags"] = want["problem_tags"]
            if diff:
                changes.append(Change("update", "service", name, diff, have["serviceid"]))
        return changes

    def _plan_slas(self) -> list[Change]:
        existing = {s["name"]: s for s in self.api.call("sla.get", {
            "output": "extend", "filter": {"name": list(self.desired.slas)},
            "selectServiceTags": "extend", "selectExcludedDowntimes": "extend"})}
        changes = []
        for name, want in self.desired.slas.items():
            have = existing.get(name)
            if have is None:
                changes.append(Change("create", "sla", name, want))
                continue
            diff: dict[str, Any] = {}
            for key in ("period", "timezone", "status", "description"):
                if str(have[key]) != str(want[key]):
                    diff[key] = want[key]
            if abs(float(have["slo"]) - float(want["slo"])) > 1e-9:
                diff["slo"] = want["slo"]
            if self.options.effective_date is not None and int(have["effective_date"]) != want["effective_date"]:
                diff["effective_date"] = want["effective_date"]
            if _tagset(have["service_tags"], op=True) != _tagset(want["service_tags"], op=True):
                diff["service_tags"] = want["service_tags"]
            have_down = sorted((d["name"], int(d["period_from"]), int(d["period_to"]))
                               for d in have["excluded_downtimes"])
            want_down = sorted((d.name, d.start, d.end) for d in want["excluded_downtimes"])
            if have_down != want_down:
                diff["excluded_downtimes"] = want["excluded_downtimes"]
            if diff:
                changes.append(Change("update", "sla", name, diff, have["slaid"]))
        return changes

    # -----------------------------------------------------------------------------------------------
    # Applying

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            getattr(self, f"_apply_{change.kind}")(change)

    def _apply_hostgroup(self, change: Change) -> None:
        self.api.call("hostgroup.create", {"name": change.name})

    def _apply_template(self, change: Change) -> None:
        text = next(t.text for t in template_files() if t.name == change.name)
        self.api.import_configuration(text)

    def _group_id(self) -> str:
        return self.api.call("hostgroup.get", {"output": ["groupid"], "filter": {"name": [GROUP]}})[0]["groupid"]

    def _apply_host(self, change: Change) -> None:
        name = change.name
        want = self.desired.hosts[name]
        template_id = self._template_ids()[want["template"]]
        rewrite_secrets = (want["secret_macros"] if change.action == "create"
                           else change.fields.get("secret_macros", {}))
        macros = [{"macro": k, "value": v} for k, v in want["macros"].items()]
        for k, v in rewrite_secrets.items():
            macros += [{"macro": k, "value": v, "type": SECRET_MACRO},
                       {"macro": fingerprint_macro(k), "value": fingerprint(v), "description": FINGERPRINT_NOTE}]
        if change.action == "create":
            params: dict[str, Any] = {"host": name, "groups": [{"groupid": self._group_id()}],
                                      "templates": [{"templateid": template_id}], "macros": macros}
            if want["interface"]:
                params["interfaces"] = [_agent_interface(want["interface"])]
            self.api.call("host.create", params)
            return
        have = self.api.call("host.get", {"output": ["hostid"], "hostids": [change.object_id],
                                          "selectMacros": "extend", "selectParentTemplates": ["templateid"],
                                          "selectGroups": ["groupid"], "selectInterfaces": "extend"})[0]
        # host.update replaces macros, templates and groups wholesale: keep what we do not manage, and keep
        # a secret macro (and its fingerprint) by id unless it has to be written.
        have_macros = {m["macro"]: m for m in have["macros"]}
        written_names = {m["macro"] for m in macros}
        kept = [{"hostmacroid": m["hostmacroid"]} for name, m in have_macros.items() if name not in written_names]
        written = [{**({"hostmacroid": have_macros[m["macro"]]["hostmacroid"]} if m["macro"] in have_macros else {}),
                    **m} for m in macros]
        params = {
            "hostid": change.object_id,
            "macros": kept + written,
            "templates": [{"templateid": t["templateid"]} for t in have["parentTemplates"]
                          if t["templateid"] != template_id] + [{"templateid": template_id}],
            "groups": [{"groupid": g["groupid"]} for g in have["groups"]] + (
                [{"groupid": self._group_id()}] if "group" in change.fields else []),
        }
        self.api.call("host.update", params)
        if "interface" in change.fields:
            self.api.call("hostinterface.create", {"hostid": change.object_id,
                                                   **_agent_interface(want["interface"], main=not have["interfaces"])})

    def _apply_service(self, change: Change) -> None:
        want = self.desired.services[change.name]
        if change.action == "create":
            self.api.call("service.create", {"name": change.name, "algorithm": 1, "sortorder": 0, **want})
        else:
            self.api.call("service.update", {"serviceid": change.object_id, **change.fields})

    def _apply_sla(self, change: Change) -> None:
        fields = dict(self.desired.slas[change.name] if change.action == "create" else change.fields)
        if "excluded_downtimes" in fields:
            fields["excluded_downtimes"] = [{"name": d.name, "period_from": d.start, "period_to": d.end}
                                            for d in fields["excluded_downtimes"]]
        if change.action == "create":
            self.api.call("sla.create", {"name": change.name, **fields})
        else:
            self.api.call("sla.update", {"slaid": change.object_id, **fields})


def _agent_interface(address: str, main: bool = True) -> dict[str, Any]:
    return {"type": AGENT_INTERFACE, "main": 1 if main else 0, "useip": 1, "ip": address, "dns": "", "port": "10050"}


def _tagset(tags: Iterable[dict[str, Any]], op: bool = False) -> set[tuple[str, ...]]:
    return {(t["tag"], str(t.get("operator", "0")) if op else "", t.get("value", "")) for t in tags}
