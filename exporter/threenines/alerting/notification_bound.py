"""Worst-case time from an outage's determination to the dispatch of its notification, from the real configs.

    bound = exporter publish                      the determined gauge is in /metrics (re-rendered ~1 s after)
          + scrape_interval + scrape_timeout      the next scrape of the exporter job has ingested it
          + evaluation_interval (of the group)    the next evaluation of the customer alert sees it
          + `for`, rounded up to evaluations      (0 for ThreeninesServiceUnavailable)
          + alertmanagers[].timeout               Prometheus' send to Alertmanager
          + max(group_wait, group_interval)       first flush of a new group / next flush of an existing one
          + retry window                          a failing integration is retried until the flush times out:
                                                  max(group_interval, 10 s) (+ peer_timeout × position in a cluster)

It is a bound for one retry window: an integration still failing after it is retried at the next flush, which
no configuration can bound; that is what the ThreeninesNotificationOverdue alert and the delivery ledger are for.
The bound ends where the exporter's delivery webhook takes the post; the delivery itself (a relay's 250, a
gateway's 2xx) is measured, not bounded: threenines_notification_delivery_delay_seconds.
Also checked: every customer's alert routes to a receiver posting to the exporter's delivery webhook with
send_resolved, and every template file alertmanager.yml names exists (a glob matching nothing loads nothing,
and every message using a template then fails at run time while `amtool check-config` passes).
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from threenines.alerting.alertmanager_config import GeneratorError, delivery_url
from threenines.config.configfile import ConfigError, Node, load
from threenines.config.inventory import Customer, Inventory

EXPORTER_PUBLISH_SECONDS = 2.0  # service.MIN_TICK_SPACING (1 s), the tick, and the scrape rendering the change
AM_MIN_FLUSH_TIMEOUT = 10.0  # Alertmanager's notify.MinTimeout
AM_DEFAULTS = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 4 * 3600.0}
PROM_DEFAULTS = {"scrape_interval": 60.0, "scrape_timeout": 10.0, "evaluation_interval": 60.0, "timeout": 10.0}
CUSTOMER_AUDIENCE = ("audience", "customer")


# ---------------------------------------------------------------------------------------------------
# Lenient access to other tools' YAML: their schemas are theirs to validate (promtool, amtool); we read the
# few fields we need and locate every error as file:line field.path.


def _items(node: Node, raw: yaml.Node) -> dict[str, tuple[Node, yaml.Node]]:
    if not isinstance(raw, yaml.MappingNode):
        node.fail("expected a mapping (key: value)")
    out = {}
    for key, value in raw.value:
        path = f"{node.path}.{key.value}" if node.path else str(key.value)
        out[str(key.value)] = (Node(value, path, node.source), value)
    return out


def _list(node: Node, raw: yaml.Node) -> list[tuple[Node, yaml.Node]]:
    if node.is_null:
        return []
    if not isinstance(raw, yaml.SequenceNode):
        node.fail("expected a list")
    return [(Node(v, f"{node.path}[{i}]", node.source), v) for i, v in enumerate(raw.value)]


def _load(path: str | Path) -> tuple[Node, yaml.Node]:
    root = load(path)
    raw = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    # An empty file composes to no node: the same as an empty mapping to the readers below.
    return root, raw if raw is not None else yaml.MappingNode("tag:yaml.org,2002:map", [])


# ---------------------------------------------------------------------------------------------------
# Prometheus


@dataclass(frozen=True)
class PrometheusTimings:
    scrape_interval: float
    scrape_timeout: float
    evaluation_interval: float
    alertmanager_timeout: float
    rule_files: tuple[str, ...]


def prometheus_timings(path: str | Path, job: str = "threenines") -> PrometheusTimings:
    root, raw = _load(path)
    top = _items(root, raw)
    glob_ = _items(*top["global"]) if "global" in top else {}

    def duration(fields: dict[str, tuple[Node, yaml.Node]], key: str, default: float) -> float:
        return fields[key][0].duration(0.0) if key in fields else default

    scrape = duration(glob_, "scrape_interval", PROM_DEFAULTS["scrape_interval"])
    timeout = duration(glob_, "scrape_timeout", PROM_DEFAULTS["scrape_timeout"])
    evaluation = duration(glob_, "evaluation_interval", PROM_DEFAULTS["evaluation_interval"])
    jobs = [_items(*j) for j in _list(*top["scrape_configs"])] if "scrape_configs" in top else []
    match = next((j for j in jobs if "job_name" in j and j["job_name"][0].raw == job), None)
    if match is None:
        where = top["scrape_configs"][0] if "scrape_configs" in top else root
        where.fail(f"no scrape job named {job!r}: the alert rules expect the exporter under job_name: {job}")
    scrape = duration(match, "scrape_interval", scrape)
    timeout = duration(match, "scrape_timeout", min(timeout, scrape))
    if "alerting" not in top or "alertmanagers" not in _items(*top["alerting"]):
        root.fail("no alerting.alertmanagers: Prometheus would never send the alerts")
    managers = [_items(*m) for m in _list(*_items(*top["alerting"])["alertmanagers"])]
    if not managers:
        root.fail("alerting.alertmanagers is empty: Prometheus would never send the alerts")
    am_timeout = max(duration(m, "timeout", PROM_DEFAULTS["timeout"]) for m in managers)
    rule_files = tuple(n.raw for n, _ in _list(*top["rule_files"])) if "rule_files" in top else ()
    return PrometheusTimings(scrape, timeout, evaluation, am_timeout, rule_files)


@dataclass(frozen=True)
class CustomerAlert:
    """An alert rule whose notification is owed to the customer (label audience="customer")."""

    name: str
    labels: dict[str, str]
    hold: float  # `for`
    group_interval: float  # the rule group's interval, or evaluation_interval
    source: str
    # The rule's expression's matchers on `service` (e.g. service!="application"): the services it can fire for.
    service_matchers: tuple[Matcher, ...] = ()

    def fires_for(self, service: str) -> bool:
        return all(m.matches({"service": service}) for m in self.service_matchers)


# A label matcher on `service` inside a PromQL selector: {service="power"}, {service!~"app.*"}.
_SERVICE_MATCHER_RE = re.compile(r'[{,]\s*service\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def customer_alerts(rule_paths: Iterable[str | Path], evaluation_interval: float) -> list[CustomerAlert]:
    out = []
    for path in rule_paths:
        root, raw = _load(path)
        for group_node, group_raw in _list(*_items(root, raw)["groups"]):
            group = _items(group_node, group_raw)
            interval = group["interval"][0].duration(0.0) if "interval" in group else evaluation_interval
            for rule_node, rule_raw in _list(*group["rules"]):
                rule = _items(rule_node, rule_raw)
                if "alert" not in rule or "labels" not in rule:
                    continue
                labels = {k: n.raw for k, (n, _) in _items(*rule["labels"]).items()}
                if labels.get(CUSTOMER_AUDIENCE[0]) != CUSTOMER_AUDIENCE[1]:
                    continue
                hold = rule["for"][0].duration(-1.0) if "for" in rule else 0.0
                expr = rule["expr"][0].raw if "expr" in rule else ""
                services = tuple(Matcher("service", op, value) for op, value in _SERVICE_MATCHER_RE.findall(expr))
                out.append(CustomerAlert(rule["alert"][0].raw, labels, hold, interval, f"{path}:{rule_node.line}",
                                         services))
    return out


def expand_rule_files(patterns: Iterable[str], base: Path | None = None) -> list[str]:
    """Glob patterns (relative ones to base, as Prometheus resolves rule_files) → existing files."""
    files: list[str] = []
    for pattern in patterns:
        full = pattern if base is None or Path(pattern).is_absolute() else str(base / pattern)
        files += sorted(glob.glob(full)) or ([full] if not glob.has_magic(full) else [])
    return files


# ---------------------------------------------------------------------------------------------------
# Alertmanager routing (the subset of its semantics routing needs: matchers, match/match_re, continue,
# inherited timings), cross-checked against `amtool config routes test` in tests/alertmanager.

_MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def parse_matcher(node: Node) -> Matcher:
    match = _MATCHER_RE.match(node.raw)
    if not match:
        node.fail(f"{node.raw!r} is not a matcher such as customer=\"acme\"")
    name, op, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
    return Matcher(name, op, value)


@dataclass
class Route:
    receiver: str
    matchers: list[Matcher]
    cont: bool
    group_wait: float
    group_interval: float
    routes: list[Route] = field(default_factory=list)
    line: int = 0


def _route(node: Node, raw: yaml.Node, parent: Route | None) -> Route:
    f = _items(node, raw)
    matchers = [parse_matcher(n) for n, _ in _list(*f["matchers"])] if "matchers" in f else []
    if "match" in f:
        matchers += [Matcher(k, "=", n.raw) for k, (n, _) in _items(*f["match"]).items()]
    if "match_re" in f:
        matchers += [Matcher(k, "=~", n.raw) for k, (n, _) in _items(*f["match_re"]).items()]

    def inherited(key: str) -> float:
        if key in f:
            return f[key][0].duration(-1.0)
        return getattr(parent, key) if parent else AM_DEFAULTS[key]

    if "receiver" not in f and parent is None:
        node.fail("the root route needs a receiver")
    route = Route(
        receiver=f["receiver"][0].raw if "receiver" in f else parent.receiver,  # type: ignore[union-attr]
        matchers=matchers,
        cont=f["continue"][0].boolean() if "continue" in f else False,
        group_wait=inherited("group_wait"),
        group_interval=inherited("group_interval"),
        line=node.line,
    )
    route.routes = [_route(n, r, route) for n, r in _list(*f["routes"])] if "routes" in f else []
    return route


def match_routes(route: Route, labels: dict[str, str]) -> list[Route]:
    """The routes an alert with these labels ends in (Alertmanager's Route.Match)."""
    found: list[Route] = []
    for child in route.routes:
        if all(m.matches(labels) for m in child.matchers):
            found += match_routes(child, labels)
            if not child.cont:
                break
    return found or [route]


@dataclass(frozen=True)
class AlertmanagerConfig:
    root: Route
    receivers: dict[str, dict]
    source: str
    templates: tuple[str, ...] = ()


def template_problems(am: AlertmanagerConfig) -> list[str]:
    """Each `templates:` pattern that matches no file (relative ones resolve beside the config, as Alertmanager
    resolves them)."""
    base = Path(am.source).parent
    problems = []
    for pattern in am.templates:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        if not glob.glob(full):
            problems.append(f"{am.source}: templates: {pattern!r} matches no file ({full}): every notification "
                            "using a template would fail at run time; write them with threenines alertmanager-config "
                            "-o (it puts templates/ beside the config)")
    return problems


def load_alertmanager(path: str | Path) -> AlertmanagerConfig:
    root, raw = _load(path)
    top = _items(root, raw)
    if "route" not in top:
        root.fail("no route: section")
    route = _route(*top["route"], None)
    receivers = {}
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for receiver in data.get("receivers") or []:
        receivers[str(receiver.get("name"))] = receiver
    patterns = tuple(str(p) for p in data.get("templates") or [])
    return AlertmanagerConfig(route, receivers, str(path), patterns)


# ---------------------------------------------------------------------------------------------------
# The bound per customer


@dataclass(frozen=True)
class CustomerLatency:
    customer: str
    service: str
    alert: str
    receivers: tuple[str, ...]
    terms: dict[str, float]
    deadline: float
    problems: tuple[str, ...]

    @property
    def bound(self) -> float:
        return sum(self.terms.values())

    @property
    def ok(self) -> bool:
        return not self.problems and self.bound <= self.deadline


def _targets(customer: Customer, service: str) -> list[str]:
    return [p.id for p in customer.ports] if service == "connectivity" else ["power"]


def customer_latencies(inventory: Inventory, prom: PrometheusTimings, alerts: list[CustomerAlert],
                       am: AlertmanagerConfig, cluster_peer_wait: float = 0.0) -> list[CustomerLatency]:
    if not alerts:
        raise ConfigError(prom.rule_files[0] if prom.rule_files else "rules", 0, "",
                          'no alert rule has the label audience: "customer": no customer would ever be notified')
    out = []
    try:
        delivery: str | None = delivery_url(inventory)
    except GeneratorError:
        delivery = None
    for customer in inventory.customers:
        for service in customer.services:
            for alert in alerts:
                if not alert.fires_for(service):
                    continue  # its expression selects other services: it owes this one nothing
                worst: CustomerLatency | None = None
                for target in _targets(customer, service):
                    labels = {**alert.labels, "alertname": alert.name, "customer": customer.id, "service": service,
                              "target": target}
                    result = _one(customer, service, alert, labels, prom, am, delivery, cluster_peer_wait)
                    if worst is None or (result.problems, result.bound) > (worst.problems, worst.bound):
                        worst = result
                assert worst is not None
                out.append(worst)
    return out


def _one(customer: Customer, service: str, alert: CustomerAlert, labels: dict[str, str], prom: PrometheusTimings,
         am: AlertmanagerConfig, delivery: str | None, cluster_peer_wait: float) -> CustomerLatency:
    routes = match_routes(am.root, labels)
    problems = []
    holding = []
    for route in routes:
        receiver = am.receivers.get(route.receiver)
        if receiver is None:
            problems.append(f"route on line {route.line} names receiver {route.receiver!r}, which is not defined")
            continue
        if delivery is not None and _sends_resolved(receiver, delivery):
            holding.append(route)
    if delivery is None:
        problems.append("the inventory has no notification.audit_webhook: nothing delivers to the customer's "
                        "contacts (the delivery webhook is beside it)")
    elif not holding:
        names = ", ".join(r.receiver for r in routes)
        problems.append(f"its alerts route to {names}, which lack the exporter's delivery webhook {delivery} "
                        "with send_resolved: true: nobody would deliver to this customer's contacts (regenerate "
                        "with threenines alertmanager-config)")
    route = min(holding or routes, key=lambda r: max(r.group_wait, r.group_interval))
    evaluation = alert.group_interval
    terms = {
        "exporter_publish": EXPORTER_PUBLISH_SECONDS,
        "scrape_interval": prom.scrape_interval,
        "scrape_timeout": prom.scrape_timeout,
        "evaluation_interval": evaluation,
        "for": math.ceil(alert.hold / evaluation) * evaluation if alert.hold > 0 else 0.0,
        "alertmanager_send_timeout": prom.alertmanager_timeout,
        "group_wait_or_interval": max(route.group_wait, route.group_interval),
        "retry_window": max(route.group_interval, AM_MIN_FLUSH_TIMEOUT) + cluster_peer_wait,
    }
    return CustomerLatency(customer.id, service, alert.name, tuple(r.receiver for r in routes), terms,
                           customer.notification_deadline, tuple(problems))


def _sends_resolved(receiver: dict, url: str) -> bool:
    return any(w.get("url") == url and w.get("send_resolved", True) for w in receiver.get("webhook_configs", []))


def check_deployment(inventory: Inventory, prometheus_config: str | Path, rule_patterns: Iterable[str] | None,
                     alertmanager_config: str | Path, job: str = "threenines") -> list[CustomerLatency]:
    """Read the three configs and compute every customer's bound; ConfigError when one cannot be read."""
    prom = prometheus_timings(prometheus_config, job)
    base = Path(prometheus_config).parent
    rule_files = expand_rule_files(rule_patterns, None) if rule_patterns else expand_rule_files(prom.rule_files, base)
    alerts = customer_alerts(rule_files, prom.evaluation_interval)
    return customer_latencies(inventory, prom, alerts, load_alertmanager(alertmanager_config))


@dataclass(frozen=True)
class DeploymentCheck:
    """What `threenines check` with the deployment configs found: every customer route's bound, and the
    alertmanager.yml templates that cannot load."""

    latencies: tuple[CustomerLatency, ...]
    template_problems: tuple[str, ...]

    @property
    def failed(self) -> tuple[CustomerLatency, ...]:
        return tuple(r for r in self.latencies if not r.ok)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.template_problems


def check_deployment_configs(inventory: Inventory, prometheus_config: str | Path, rule_patterns: Iterable[str] | None,
                             alertmanager_config: str | Path, job: str = "threenines") -> DeploymentCheck:
    """check_deployment and the template check of alertmanager.yml; ConfigError when a config cannot be read."""
    latencies = check_deployment(inventory, prometheus_config, rule_patterns, alertmanager_config, job)
    templates = template_problems(load_alertmanager(alertmanager_config))
    return DeploymentCheck(tuple(latencies), tuple(templates))
