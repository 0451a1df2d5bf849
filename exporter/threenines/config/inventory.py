"""The inventory: one YAML file → frozen dataclasses describing the contract and what to probe.

Parsed once at load; everything downstream trusts these types. Secrets are never held inline: the file
names an environment variable or a file, resolved only where the secret is used. At load a secret that is
already there is read once, only to refuse one that cannot work (empty, or an SNMPv3 key under 8 characters).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from threenines.config.configfile import ConfigError, Errors, Node, format_duration, load, load_text, shown

if TYPE_CHECKING:
    from threenines.config.applications import ApplicationCheck

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")
ID_RULE = "use letters, digits and _ . : - (start with a letter or digit, at most 63 characters)"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")
URL_RE = re.compile(r"https?://[^\s]+")
HOSTPORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s]+)(?::(?P<port>[0-9]{1,5}))?")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
FILE_RE = re.compile(r"[^\x00]{1,4096}")  # PATH_MAX; a NUL cannot be in a file name

SERVICES = ("connectivity", "power")
CONTACT_LANGUAGES = ("en", "zh-CN")  # contacts.language: the message catalogues of threenines.notify
T = TypeVar("T")


# RFC 3414 §11.2: a USM password shorter than 8 octets is refused (net-snmp and pysnmp refuse it too; pysnmp
# does so with an exception whose message holds the key).
V3_KEY_MIN_LENGTH = 8
V3_KEY_RULE = "SNMPv3 keys need at least 8 characters (RFC 3414)"
MAX_SECRET_BYTES = 64 * 1024
Location = tuple[str, int, str]  # (file, line, field path) of a reference in the inventory


class SecretError(ConfigError):
    """A secret reference could not be resolved or holds an unusable value; the message names the reference
    (with its file, line and field when it came from the inventory), never a value."""

    def __init__(self, message: str, at: Location = ("", 0, "")) -> None:
        super().__init__(*at, message)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file. repr/str never show the value."""

    env: str | None = None
    file: str | None = None
    at: Location = field(default=("", 0, ""), compare=False, repr=False)

    def resolve(self, min_length: int = 1, rule: str = "") -> str:
        """The value; SecretError when it cannot be read, is blank (an empty token would turn authentication
        off) or is shorter than min_length (rule says why)."""
        return self._usable(self._read(), min_length, rule)

    def check_at_load(self, min_length: int = 1, rule: str = "") -> None:
        """Refuse at load a secret that is there but unusable; one not there yet (`check` on a build host, a
        file only the service user reads) is resolved, and refused, where it is used."""
        try:
            value = self._read()
        except SecretError:
            return
        self._usable(value, min_length, rule)

    def _usable(self, value: str, min_length: int, rule: str) -> str:
        if not value.strip():
            where = f"environment variable {self.env}" if self.env is not None else f"secret file {self.file}"
            raise SecretError(f"{where} is empty: an empty secret would turn authentication off; "
                              f"put the secret in {self._home()}", self.at)
        if len(value) < min_length:
            raise SecretError(f"{self.describe()} holds fewer than {min_length} characters: {rule}; "
                              f"put a longer one in {self._home()}", self.at)
        return value

    def _read(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set", self.at)
            return value
        assert self.file is not None
        try:
            with open(self.file, "rb") as handle:  # a secret is small: /dev/zero or a log file is not read whole
                data = handle.read(MAX_SECRET_BYTES + 1)
        except (OSError, ValueError) as err:  # ValueError: a NUL in the name
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not a file name"
            raise SecretError(f"cannot read secret file {self.file}: {reason}", self.at) from None
        if len(data) > MAX_SECRET_BYTES:
            raise SecretError(f"secret file {self.file} holds more than {MAX_SECRET_BYTES} bytes: name the file "
                              "that holds only the secret", self.at)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretError(f"cannot read secret file {self.file}: not UTF-8 text", self.at) from None

    def _home(self) -> str:
        return self.env if self.env is not None else str(self.file)

    def describe(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    def __str__(self) -> str:
        return f"<secret {self.describe()}>"


@dataclass(frozen=True)
class ProbePolicy:
    """How one port is pinged and when its failures become an outage (docs/design.md §1)."""

    interval: float = 300.0
    threshold: int = 2
    packets: int = 3
    timeout: float = 2.0
    packet_interval: float = 0.2


@dataclass(frozen=True)
class PowerPolicy:
    interval: float = 60.0
    threshold: int = 2


class TargetKey(NamedTuple):
    """What every step names a contract target by: a port, a customer's power, an application."""

    customer: str
    service: str  # one of SERVICES
    target: str


@dataclass(frozen=True)
class Port:
    id: str
    address: str
    policy: ProbePolicy

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class Contact:
    """One designated contact. kind: email | sms | phone | pagerduty | webhook."""

    kind: str
    target: str  # e-mail address, E.164 number, or URL; never a secret
    secret: SecretRef | None = None  # PagerDuty routing key or webhook bearer token


@dataclass(frozen=True)
class Contacts:
    version: str
    notify: tuple[Contact, ...]
    language: str = "en"  # of the messages threenines delivers to them (threenines.notify): en | zh-CN


@dataclass(frozen=True)
class Feed:
    """One power feed of a customer: outlets on a PDU (A/B feeds are two Feed entries)."""

    id: str
    pdu: str
    outlets: tuple[str, ...]


@dataclass(frozen=True)
class CustomerPower:
    feeds: tuple[Feed, ...]
    policy: PowerPolicy


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    site: str
    timezone: str
    objective: float
    notification_deadline: float
    contacts: Contacts
    ports: tuple[Port, ...]
    power: CustomerPower | None
    # The customer's own applications (threenines.config.applications): notified like any outage, billed only when
    # applications_billable says the contract makes them provider outage time (docs/design.md).
    applications: tuple[ApplicationCheck, ...] = ()
    applications_billable: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def services(self) -> tuple[str, ...]:
        """The billed services: applications only where the customer's contract makes them billable."""
        return tuple(s for s, on in (("connectivity", bool(self.ports)), ("power", self.power is not None),
                                     ("application", self.applications_billable and bool(self.applications))) if on)


@dataclass(frozen=True)
class Site:
    id: str
    name: str


@dataclass(frozen=True)
class SnmpAuth:
    id: str
    version: str  # "1" | "2c" | "3"
    community: SecretRef | None = None
    username: str | None = None
    security_level: str | None = None  # noAuthNoPriv | authNoPriv | authPriv
    auth_protocol: str | None = None
    auth_key: SecretRef | None = None
    priv_protocol: str | None = None
    priv_key: SecretRef | None = None
    context: str = ""


@dataclass(frozen=True)
class NutSource:
    """profile: nut: a UPS read from a NUT server (upsd), by its name there (threenines.probes.nut)."""

    ups: str
    username: str | None = None
    password: SecretRef | None = None


@dataclass(frozen=True)
class Device:
    id: str
    kind: str  # ups | pdu
    site: str
    host: str
    port: int
    auth: str
    profile: str
    input: str  # "mains", or the id of the UPS/PDU that feeds this device
    interval: float
    timeout: float
    retries: int
    nut: NutSource | None = None  # profile: nut (no auth:, port 3493 by default)


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: SecretRef | None = None


@dataclass(frozen=True)
class Smtp:
    smarthost: str
    sender: str
    username: str | None = None
    password: SecretRef | None = None
    require_tls: bool = True
    ca_file: str | None = None  # PEM bundle to verify the relay's certificate (default: the system's CAs)


@dataclass(frozen=True)
class Notification:
    audit_webhook: Endpoint | None = None
    sms_gateway: Endpoint | None = None
    smtp: Smtp | None = None


@dataclass(frozen=True)
class ExporterSettings:
    listen: str = "127.0.0.1:9839"
    state_dir: str = "/var/lib/threenines"
    max_concurrent_probes: int = 512
    audit_token: SecretRef | None = None
    vantage: str = ""  # a replica exporter's name: label of every contract family (serve --vantage overrides)


@dataclass(frozen=True)
class Inventory:
    source: str
    exporter: ExporterSettings
    notification: Notification
    sites: tuple[Site, ...]
    customers: tuple[Customer, ...]
    auths: tuple[SnmpAuth, ...]
    devices: tuple[Device, ...]
    _by_id: dict[str, Customer] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.id: c for c in self.customers})

    def customer(self, customer_id: str) -> Customer:
        return self._by_id[customer_id]

    def ports(self) -> Iterator[tuple[Customer, Port]]:
        for customer in self.customers:
            for port in customer.ports:
                yield customer, port

    def device(self, device_id: str) -> Device:
        return next(d for d in self.devices if d.id == device_id)

    def auth(self, auth_id: str) -> SnmpAuth:
        return next(a for a in self.auths if a.id == auth_id)


# ---------------------------------------------------------------------------------------------------
# Parsing
#
# Every error in the file is reported at once: each field is parsed on its own (errors.attempt), a bad one is
# recorded and replaced by a stand-in, and an item (site, customer, port, device, ...) with any error is left
# out of the checks that follow, so one mistake is reported once and not again as "unknown device". Nothing is
# returned from a file with errors.

# Bounds (seconds) for the durations an inventory gives; docs: examples/inventory.yml. Outside them a value is
# a typo or cannot work: a 1 ms interval floods the port, a 1000-year one never probes, and a reply timeout
# under 10 ms fails every probe of a port that answers.
INTERVAL_BOUNDS = (1.0, 86400.0)  # ping, power and device poll intervals: 1s..1d
TIMEOUT_BOUNDS = (0.01, 60.0)  # ping reply and SNMP request timeouts: 10ms..1m, and shorter than the interval
PACKET_INTERVAL_BOUNDS = (0.01, 10.0)  # between the echo requests of one probe: 10ms..10s
DEADLINE_BOUNDS = (1.0, 86400.0)  # notification_deadline: 1s..1d
# Values that become Prometheus label values are bounded like ids (ID_RE: at most 63 characters).
NAME_MAX_LENGTH = 256  # customer and site names
LABEL_MAX_LENGTH = 128  # contacts version, outlet
DEFAULT_LISTEN_PORT = 9839


def load_inventory(path: str | Path) -> Inventory:
    return parse(load(path))


def parse_inventory_text(text: str, source: str = "<inventory>") -> Inventory:
    return parse(load_text(text, source))


_TOP_KEYS = ("exporter", "notification", "defaults", "sites", "customers", "auth", "devices")


def parse(root: Node) -> Inventory:
    errors = Errors()
    top = root.collecting(errors).mapping(_TOP_KEYS, required=("customers",))
    ping, power = errors.attempt(lambda: _defaults(top["defaults"], errors), (ProbePolicy(), PowerPolicy())) \
        if "defaults" in top else (ProbePolicy(), PowerPolicy())
    lists = {key: errors.attempt(top[key].sequence, None) if key in top else []
             for key in ("sites", "auth", "devices", "customers")}
    if lists["customers"] == []:  # None: not a list, already reported
        errors.add(top["customers"].error("at least one customer is needed"))
    site_nodes, auth_nodes, device_nodes, customer_nodes = (nodes or [] for nodes in lists.values())
    sites = _items(errors, site_nodes, _site, "site")
    auths = _items(errors, auth_nodes, _auth, "auth")
    devices = _items(errors, device_nodes, functools.partial(_device, errors=errors), "device")
    customers = _items(errors, customer_nodes, functools.partial(_customer, ping=ping, power=power, errors=errors),
                       "customer")
    exporter = errors.attempt(lambda: _exporter(top["exporter"], errors), ExporterSettings()) \
        if "exporter" in top else ExporterSettings()
    notification = errors.attempt(lambda: _notification(top["notification"], errors), Notification()) \
        if "notification" in top else Notification()
    declared = _Declared(
        sites=_declared(site_nodes), auths=_declared(auth_nodes), devices=_declared(device_nodes),
        clean_devices={d.id: d for _, d in devices})
    _check_references(errors, declared, customers, devices)
    errors.raise_any()
    return Inventory(
        source=root.source,
        exporter=exporter,
        notification=notification,
        sites=tuple(s for _, s in sites),
        customers=tuple(c for _, c in customers),
        auths=tuple(a for _, a in auths),
        devices=tuple(d for _, d in devices),
    )


def _items(errors: Errors, nodes: list[Node], build: Callable[[Node], T], what: str | None) -> list[tuple[Node, T]]:
    """The items of a list that parsed without any error (errors recorded); with what, their ids are unique."""
    clean: list[tuple[Node, T]] = []
    for node in nodes:
        mark = errors.count
        item = errors.attempt(functools.partial(build, node), None)
        if item is not None and errors.count == mark:
            clean.append((node, item))
    if what is not None:
        _unique(errors, ((getattr(item, "id", ""), node) for node, item in clean), what)
    return clean


def _unique(errors: Errors, pairs: Iterable[tuple[str, Node]], what: str) -> None:
    seen: dict[str, Node] = {}
    for ident, node in pairs:
        if ident in seen:
            errors.add(node.error(f"duplicate {what} id {ident!r} (first defined on line {seen[ident].line})"))
        else:
            seen[ident] = node


def _declared(nodes: list[Node]) -> set[str]:
    """Every id the file declares in a list, also of items with errors: a reference to one of those is not
    reported again as unknown."""
    return {ident for ident in (n.peek("id") for n in nodes) if ident is not None}


@dataclass(frozen=True)
class _Declared:
    sites: set[str]
    auths: set[str]
    devices: set[str]
    clean_devices: dict[str, Device]


def _check_references(errors: Errors, declared: _Declared, customers: list[tuple[Node, Customer]],
                      devices: list[tuple[Node, Device]]) -> None:
    for c_node, customer in customers:
        fields = c_node.mapping(_CUSTOMER_KEYS)
        _check_site(errors, declared, c_node, fields, "customer")
        if customer.power is not None:
            feed_nodes = fields["power"].mapping(_POWER_KEYS)["feeds"].sequence()
            for f_node, feed in zip(feed_nodes, customer.power.feeds, strict=True):
                pdu_node = f_node.mapping(_FEED_KEYS)["pdu"]
                pdu = declared.clean_devices.get(feed.pdu)
                if feed.pdu not in declared.devices:
                    errors.add(pdu_node.error(f"unknown device {shown(feed.pdu)}; define it under devices:"))
                elif pdu is not None and pdu.kind != "pdu":
                    errors.add(pdu_node.error(f"device {feed.pdu!r} is a {pdu.kind}, not a pdu"))
    for d_node, device in devices:
        fields = d_node.mapping(_DEVICE_KEYS)
        if device.nut is None and device.auth not in declared.auths:
            valid = _listing(declared.auths) or "none defined: add an auth: section"
            errors.add(fields["auth"].error(f"unknown auth {shown(device.auth)}; defined: {valid}"))
        if device.input != "mains" and device.input not in declared.devices:
            errors.add(fields["input"].error(
                f"unknown device {shown(device.input)}; use 'mains' or the id of a UPS or PDU"))
        _check_site(errors, declared, d_node, fields, "device")
    _check_input_cycles(errors, declared, devices)


def _listing(ids: set[str], most: int = 10) -> str:
    """Some of the valid ids for a message: a message never grows with the inventory."""
    first = sorted(ids)[:most]
    # each cut short too: an id the loader refused still names itself here, however long it is
    return ", ".join(i if len(i) <= 64 else shown(i) for i in first) + (
        f", … ({len(ids) - most} more)" if len(ids) > most else "")


def _check_site(errors: Errors, declared: _Declared, node: Node, fields: dict[str, Node], what: str) -> None:
    if not declared.sites:
        return  # sites are optional; once there are any, everything says where it is
    valid = _listing(declared.sites)
    if "site" not in fields:
        errors.add(node.error(f"missing site: the inventory defines sites ({valid}), so each {what} names "
                              f"its own: add site: {min(declared.sites)} (or the right one)"))
    elif fields["site"].raw not in declared.sites:
        errors.add(fields["site"].error(f"unknown site {shown(fields['site'].raw)}; defined sites: {valid}"))


def _check_input_cycles(errors: Errors, declared: _Declared, devices: list[tuple[Node, Device]]) -> None:
    by_id = declared.clean_devices
    for d_node, device in devices:
        chain = [device.id]
        current: Device | None = device
        while current is not None and current.input != "mains" and len(chain) <= len(by_id):
            current = by_id.get(current.input)
            if current is None:
                break  # unknown or broken upstream device: reported where it is defined or referenced
            if current.id in chain:
                errors.add(d_node.mapping(_DEVICE_KEYS)["input"].error(
                    f"power inputs form a loop: {' -> '.join([*chain, current.id])}"))
                break
            chain.append(current.id)


def _ident(node: Node) -> str:
    return node.string(ID_RE, ID_RULE)


def _secret(node: Node, min_length: int = 1, rule: str = "") -> SecretRef:
    if not node.is_mapping:
        node.fail("secrets are never written inline: use {env: VARIABLE} or {file: /path/to/secret}")
    fields = node.mapping(("env", "file"))
    if len(fields) != 1:
        node.fail("give exactly one of env: or file:")
    at = (node.source, node.line, node.path)
    if "env" in fields:
        ref = SecretRef(env=fields["env"].string(ENV_RE, "an environment variable name"), at=at)
    else:
        ref = SecretRef(file=fields["file"].string(FILE_RE, "a file name of at most 4096 characters"), at=at)
    ref.check_at_load(min_length, rule)
    return ref


_PING_KEYS = ("interval", "threshold", "packets", "timeout", "packet_interval")


def _probe_policy(node: Node, base: ProbePolicy, errors: Errors) -> ProbePolicy:
    return _probe_policy_from_fields(node.mapping(_PING_KEYS), base, node, errors)


def _power_policy(node: Node, base: PowerPolicy, errors: Errors) -> PowerPolicy:
    return _power_policy_from_fields(node.mapping(("interval", "threshold")), base, errors)


def _defaults(node: Node, errors: Errors) -> tuple[ProbePolicy, PowerPolicy]:
    f = node.mapping(("ping", "power"))
    ping = errors.attempt(lambda: _probe_policy(f["ping"], ProbePolicy(), errors), ProbePolicy()) \
        if "ping" in f else ProbePolicy()
    power = errors.attempt(lambda: _power_policy(f["power"], PowerPolicy(), errors), PowerPolicy()) \
        if "power" in f else PowerPolicy()
    return ping, power


def _site(node: Node) -> Site:
    f = node.mapping(("id", "name"), required=("id",))
    ident = _ident(f["id"])
    return Site(id=ident, name=f["name"].text(NAME_MAX_LENGTH) if "name" in f else ident)


def _objective(node: Node) -> float:
    raw = node.raw.strip()
    try:
        # round(): 99.9 / 100 is 0.9990000000000001 in binary floating point.
        value = round(float(raw[:-1]) / 100, 12) if raw.endswith("%") else float(raw)
    except ValueError:
        node.fail(f"{shown(raw)} is not an objective: write 99.9% or 0.999")
    if not 0 < value < 1:
        node.fail(f"{shown(raw)} must be between 0 and 100% (exclusive): write 99.9% or 0.999")
    return value


def _timezone(node: Node) -> str:
    name = node.string()
    try:
        # zoneinfo opens a file named after the key: a 300-character name is an OSError (ENAMETOOLONG), and
        # IsADirectoryError for "Europe"; all of them mean "no such zone".
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = sorted(z for z in available_timezones() if z.lower().endswith(name.lower().split("/")[-1]))[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else " (an IANA name such as Europe/Amsterdam)"
        node.fail(f"{shown(name)} is not a known time zone{hint}")
    return name


def _contact(node: Node) -> Contact:
    f = node.mapping(("email", "sms", "phone", "pagerduty", "webhook"))
    if len(f) != 1:
        node.fail("each contact is exactly one of email:, sms:, phone:, pagerduty:, webhook:")
    kind, value = next(iter(f.items()))
    if kind == "email":
        return Contact(kind, value.string(EMAIL_RE, "an e-mail address such as noc@example.com"))
    if kind in ("sms", "phone"):
        return Contact(kind, value.string(PHONE_RE, "an E.164 number such as +31201234567"))
    if kind == "pagerduty":
        pd = value.mapping(("routing_key", "url"), required=("routing_key",))
        url = pd["url"].string(URL_RE, "an http(s) URL") if "url" in pd else "https://events.pagerduty.com/v2/enqueue"
        return Contact(kind, url, _secret(pd["routing_key"]))
    hook = value.mapping(("url", "token"), required=("url",))
    token = _secret(hook["token"]) if "token" in hook else None
    return Contact(kind, hook["url"].string(URL_RE, "an http(s) URL"), token)


def _contacts(node: Node, errors: Errors) -> Contacts:
    f = node.mapping(("version", "notify", "language"), required=("version", "notify"))
    version = errors.attempt(lambda: f["version"].text(LABEL_MAX_LENGTH), "")
    notify_nodes: list[Node] = errors.attempt(f["notify"].sequence, [])
    notify = tuple(contact for _, contact in _items(errors, notify_nodes, _contact, None))
    if not notify_nodes:
        errors.add(f["notify"].error("at least one designated contact is needed (the 15-minute promise is to them)"))
    language = errors.attempt(lambda: f["language"].choice(CONTACT_LANGUAGES), "en") if "language" in f else "en"
    return Contacts(version=version, notify=notify, language=language)


def _unicast(node: Node, address: str, what: str) -> None:
    """Refuse an address that is not one host's: every probe of it would mean something else."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        node.fail(f"{address} is the unspecified address: what is sent to it reaches this host itself, so the "
                  f"{what} would look up whenever this host is; give the {what}'s own address")
    if ip.is_multicast:
        node.fail(f"{address} is a multicast address: any member of the group (or none) would answer for the "
                  f"{what}; give its own unicast address")
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        node.fail(f"{address} is the broadcast address: any host on the link (or none) would answer for the "
                  f"{what}; give its own unicast address")


def _probe_address(node: Node) -> str:
    address = node.ip_address()
    _unicast(node, address, "port")
    return address


def _port(node: Node, base: ProbePolicy, errors: Errors) -> Port:
    f = node.mapping(("id", "address", *_PING_KEYS), required=("id", "address"), partial=True)
    ident = errors.attempt(lambda: _ident(f["id"]), "") if "id" in f else ""
    address = errors.attempt(lambda: _probe_address(f["address"]), "") if "address" in f else ""
    policy = _probe_policy_from_fields({k: f[k] for k in _PING_KEYS if k in f}, base, node, errors)
    return Port(id=ident, address=address, policy=policy)


def _probe_policy_from_fields(fields: dict[str, Node], base: ProbePolicy, node: Node, errors: Errors) -> ProbePolicy:
    def value(key: str, read: Callable[[Node], T], default: T) -> T:
        return errors.attempt(lambda: read(fields[key]), default) if key in fields else default

    mark = errors.count
    policy = ProbePolicy(
        interval=value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), base.interval),
        threshold=value("threshold", lambda n: n.integer(1, 100), base.threshold),
        packets=value("packets", lambda n: n.integer(1, 20), base.packets),
        timeout=value("timeout", lambda n: n.duration_within(*TIMEOUT_BOUNDS), base.timeout),
        packet_interval=value("packet_interval", lambda n: n.duration_within(*PACKET_INTERVAL_BOUNDS),
                              base.packet_interval),
    )
    probe_time = policy.timeout + (policy.packets - 1) * policy.packet_interval
    if errors.count == mark and probe_time >= policy.interval:
        errors.add(node.error(
            f"a probe takes up to {probe_time:g}s (timeout + (packets-1) × packet_interval), which must be "
            f"shorter than the interval ({policy.interval:g}s): lower timeout/packets or raise interval"
        ))
    return policy


_CUSTOMER_KEYS = ("id", "name", "site", "timezone", "objective", "notification_deadline", "contacts",
                  "ping", "ports", "power", "applications", "applications_billable")
_POWER_KEYS = ("feeds", "interval", "threshold")
_FEED_KEYS = ("id", "pdu", "outlets")


def _feed(node: Node) -> Feed:
    f = node.mapping(_FEED_KEYS, required=("id", "pdu", "outlets"))
    outlet_nodes = f["outlets"].sequence() if not f["outlets"].is_scalar else [f["outlets"]]
    if not outlet_nodes:
        f["outlets"].fail("a feed needs at least one outlet")
    # An outlet is matched against the PDU's outlet id or name (Sentry: AA1) and becomes a label value.
    outlets = tuple(n.text(LABEL_MAX_LENGTH) for n in outlet_nodes)
    return Feed(id=_ident(f["id"]), pdu=_ident(f["pdu"]), outlets=outlets)


def _customer_power(node: Node, base: PowerPolicy, errors: Errors) -> CustomerPower:
    f = node.mapping(_POWER_KEYS, required=("feeds",))
    feed_nodes = f["feeds"].sequence()
    if not feed_nodes:
        f["feeds"].fail("at least one feed is needed (A/B feeds: list both)")
    feeds = tuple(feed for _, feed in _items(errors, feed_nodes, _feed, "feed"))
    policy = _power_policy_from_fields({k: f[k] for k in ("interval", "threshold") if k in f}, base, errors)
    return CustomerPower(feeds=feeds, policy=policy)


def _power_policy_from_fields(fields: dict[str, Node], base: PowerPolicy, errors: Errors) -> PowerPolicy:
    return PowerPolicy(
        interval=errors.attempt(lambda: fields["interval"].duration_within(*INTERVAL_BOUNDS), base.interval)
        if "interval" in fields else base.interval,
        threshold=errors.attempt(lambda: fields["threshold"].integer(1, 100), base.threshold)
        if "threshold" in fields else base.threshold,
    )


def _customer(node: Node, ping: ProbePolicy, power: PowerPolicy, errors: Errors) -> Customer:
    f = node.mapping(_CUSTOMER_KEYS, required=("id", "timezone", "contacts"), partial=True)

    def value(key: str, read: Callable[[Node], T], default: T) -> T:
        return errors.attempt(lambda: read(f[key]), default) if key in f else default

    # Fields in the order an inventory writes them (examples/inventory.yml), so errors are listed in that order.
    ident = value("id", _ident, "")
    name = value("name", lambda n: n.text(NAME_MAX_LENGTH), ident)
    site = value("site", _ident, "")
    timezone = value("timezone", _timezone, "UTC")
    objective = value("objective", _objective, 0.999)
    deadline = value("notification_deadline", lambda n: n.duration_within(*DEADLINE_BOUNDS), 900.0)
    contacts = value("contacts", lambda n: _contacts(n, errors), Contacts("", ()))
    customer_ping = value("ping", lambda n: _probe_policy(n, ping, errors), ping)
    port_nodes: list[Node] = value("ports", Node.sequence, [])
    ports = tuple(port for _, port in _items(errors, port_nodes, lambda n: _port(n, customer_ping, errors), "port"))
    customer_power = value("power", lambda n: _customer_power(n, power, errors), None)
    from threenines.config.applications import parse_applications  # it builds on this module's parsers

    no_applications: tuple[ApplicationCheck, ...] = ()
    applications = value("applications", lambda n: parse_applications(n, customer_ping, errors), no_applications)
    billable = value("applications_billable", Node.boolean, False)
    if not port_nodes and "power" not in f:
        errors.add(node.error("a customer needs ports: (connectivity) or power: (feeds), or both"))
    return Customer(id=ident, name=name, site=site, timezone=timezone, objective=objective,
                    notification_deadline=deadline, contacts=contacts, ports=ports, power=customer_power,
                    applications=applications, applications_billable=billable)


_AUTH_KEYS = ("id", "version", "community", "username", "security_level", "auth_protocol", "auth_key",
              "priv_protocol", "priv_key", "context")
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")


def _auth(node: Node) -> SnmpAuth:
    f = node.mapping(_AUTH_KEYS, required=("id", "version"))
    ident = _ident(f["id"])
    version = f["version"].choice(("1", "2c", "3"))
    if version in ("1", "2c"):
        extra = [k for k in f if k not in ("id", "version", "community")]
        if extra:
            f[extra[0]].fail(f"{extra[0]} is for SNMP v3; v{version} uses community: only")
        if "community" not in f:
            node.fail(f"SNMP v{version} needs community: {{env: VARIABLE}} or {{file: PATH}}")
        return SnmpAuth(id=ident, version=version, community=_secret(f["community"]))
    if "community" in f:
        f["community"].fail("SNMP v3 does not use a community; give username/auth_key/priv_key")
    if "username" not in f:
        node.fail("SNMP v3 needs username:")
    level = f["security_level"].choice(("noAuthNoPriv", "authNoPriv", "authPriv")) \
        if "security_level" in f else "authPriv"
    needs = {"noAuthNoPriv": (), "authNoPriv": ("auth_key",), "authPriv": ("auth_key", "priv_key")}[level]
    for key in needs:
        if key not in f:
            node.fail(f"security_level {level} needs {key}: {{env: VARIABLE}} or {{file: PATH}}")
    used = {k for key in needs for k in (key, key.replace("_key", "_protocol"))}
    for key in ("auth_key", "priv_key", "auth_protocol", "priv_protocol"):
        if key in f and key not in used:
            f[key].fail(f"{key} is not used with security_level {level}")
    return SnmpAuth(
        id=ident,
        version="3",
        username=f["username"].string(),
        security_level=level,
        auth_protocol=f["auth_protocol"].choice(AUTH_PROTOCOLS) if "auth_protocol" in f
        else ("SHA" if "auth_key" in needs else None),
        auth_key=_secret(f["auth_key"], V3_KEY_MIN_LENGTH, V3_KEY_RULE) if "auth_key" in f else None,
        priv_protocol=f["priv_protocol"].choice(PRIV_PROTOCOLS) if "priv_protocol" in f
        else ("AES" if "priv_key" in needs else None),
        priv_key=_secret(f["priv_key"], V3_KEY_MIN_LENGTH, V3_KEY_RULE) if "priv_key" in f else None,
        context=f["context"].raw if "context" in f else "",
    )


_DEVICE_KEYS = ("id", "type", "site", "address", "auth", "profile", "input", "interval", "timeout", "retries", "nut")
NUT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


def parse_host_port(text: str, default_port: int, port_zero: bool = False) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPv6] or [IPv6]:PORT → (host, port); ValueError saying what to write instead.
    port_zero: port 0 is allowed (the kernel picks a free port)."""
    value = text.strip()
    match = HOSTPORT_RE.fullmatch(value)
    if not match:
        if value.count(":") > 1 and not value.startswith("["):
            raise ValueError(f"{shown(text)} is not HOST or HOST:PORT: write an IPv6 address in brackets, "
                             f"e.g. [::1]:{default_port}")
        raise ValueError(f"{shown(text)} is not HOST or HOST:PORT, e.g. 127.0.0.1:{default_port} or "
                         f"[::1]:{default_port}")
    host = match["host"]
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown(host)} in brackets is not an IPv6 address") from None
    elif not _is_ip(host) and not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"{shown(host)} is neither an IP address nor a host name")
    port = int(match["port"]) if match["port"] else default_port
    if not (0 if port_zero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range {0 if port_zero else 1}-65535")
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_port(node: Node, default_port: int) -> tuple[str, int]:
    try:
        return parse_host_port(node.raw, default_port)
    except ValueError as err:
        node.fail(str(err))


def _device_address(node: Node, default_port: int = 161) -> tuple[str, int]:
    host, port = _host_port(node, default_port)
    if _is_ip(host):
        _unicast(node, host, "device")
    return host, port


def _device(node: Node, errors: Errors) -> Device:
    nut_profile = node.peek("profile") == "nut"
    f = node.mapping(_DEVICE_KEYS, required=("id", "type", "address", *(() if nut_profile else ("auth",))),
                     partial=True)

    def value(key: str, read: Callable[[Node], T], default: T) -> T:
        return errors.attempt(lambda: read(f[key]), default) if key in f else default

    mark = errors.count
    host, port = value("address", lambda n: _device_address(n, 3493 if nut_profile else 161), ("", 161))
    interval = value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), 60.0)
    timeout = value("timeout", lambda n: n.duration_within(*TIMEOUT_BOUNDS), 2.0)
    if errors.count == mark and timeout >= interval:
        errors.add(f["timeout" if "timeout" in f else "interval"].error(
            f"the SNMP timeout ({format_duration(timeout)}) must be shorter than the poll interval "
            f"({format_duration(interval)}): lower timeout or raise interval"))
    return Device(
        id=value("id", _ident, ""),
        kind=value("type", lambda n: n.choice(("ups", "pdu")), "pdu"),
        site=value("site", _ident, ""),
        host=host,
        port=port,
        auth=value("auth", _ident, ""),
        profile=value("profile", Node.string, "auto"),
        input=value("input", Node.string, "mains"),
        interval=interval,
        timeout=timeout,
        retries=value("retries", lambda n: n.integer(0, 10), 1),
        nut=_nut(f, nut_profile, errors),
    )


def _nut(f: dict[str, Node], nut_profile: bool, errors: Errors) -> NutSource | None:
    """profile: nut takes nut: {ups: NAME, username: USER, password: {env: VAR}} (credentials optional)."""
    if not nut_profile:
        if "nut" in f:
            errors.add(f["nut"].error("nut: is read only with profile: nut"))
        return None
    if "nut" not in f:
        errors.add(f["profile"].error("profile: nut needs nut: {ups: NAME}, the UPS's name in upsd's ups.conf"))
        return NutSource("")

    def parse(node: Node) -> NutSource:
        n = node.mapping(("ups", "username", "password"), required=("ups",))
        if ("username" in n) != ("password" in n):
            node.fail("give both username: and password: (upsd.users), or neither")
        return NutSource(ups=n["ups"].string(NUT_NAME_RE, "a NUT UPS name (letters, digits, _ . -)"),
                         username=n["username"].string(NUT_NAME_RE, "a upsd.users name") if "username" in n else None,
                         password=_secret(n["password"]) if "password" in n else None)

    return errors.attempt(lambda: parse(f["nut"]), NutSource(""))


def _endpoint(node: Node) -> Endpoint:
    f = node.mapping(("url", "token"), required=("url",))
    return Endpoint(url=f["url"].string(URL_RE, "an http(s) URL"), token=_secret(f["token"]) if "token" in f else None)


def _smtp(node: Node) -> Smtp:
    s = node.mapping(("smarthost", "from", "username", "password", "require_tls", "ca_file"),
                     required=("smarthost", "from"))
    _host_port(s["smarthost"], 25)
    return Smtp(
        smarthost=s["smarthost"].string(),
        sender=s["from"].string(EMAIL_RE, "an e-mail address"),
        username=s["username"].string() if "username" in s else None,
        password=_secret(s["password"]) if "password" in s else None,
        require_tls=s["require_tls"].boolean() if "require_tls" in s else True,
        ca_file=s["ca_file"].string() if "ca_file" in s else None,
    )


def _notification(node: Node, errors: Errors) -> Notification:
    f = node.mapping(("audit_webhook", "sms_gateway", "smtp"))
    return Notification(
        audit_webhook=errors.attempt(lambda: _endpoint(f["audit_webhook"]), None) if "audit_webhook" in f else None,
        sms_gateway=errors.attempt(lambda: _endpoint(f["sms_gateway"]), None) if "sms_gateway" in f else None,
        smtp=errors.attempt(lambda: _smtp(f["smtp"]), None) if "smtp" in f else None,
    )


def parse_listen(text: str, port_zero: bool = False) -> tuple[str, int]:
    """exporter.listen or --listen → (host, port) to bind: HOST:PORT, [IPv6]:PORT, HOST or [IPv6] (port 9839);
    ValueError saying what to write instead."""
    return parse_host_port(text, DEFAULT_LISTEN_PORT, port_zero)


def _listen(node: Node) -> str:
    try:
        parse_listen(node.raw)
    except ValueError as err:
        node.fail(str(err))
    return node.raw.strip()


def _exporter(node: Node, errors: Errors) -> ExporterSettings:
    f = node.mapping(("listen", "state_dir", "max_concurrent_probes", "audit_token", "vantage"))

    def value(key: str, read: Callable[[Node], T], default: T) -> T:
        return errors.attempt(lambda: read(f[key]), default) if key in f else default

    return ExporterSettings(
        listen=value("listen", _listen, ExporterSettings.listen),
        state_dir=value("state_dir", Node.string, ExporterSettings.state_dir),
        max_concurrent_probes=value("max_concurrent_probes", lambda n: n.integer(1, 100_000),
                                    ExporterSettings.max_concurrent_probes),
        audit_token=value("audit_token", _secret, None),
        vantage=value("vantage", _vantage, ""),
    )


def _vantage(node: Node) -> str:
    return node.string(ID_RE, f"a vantage name is the vantage label of every series: {ID_RULE}")


__all__ = [
    "SERVICES",
    "V3_KEY_MIN_LENGTH",
    "V3_KEY_RULE",
    "ConfigError",
    "Contact",
    "Contacts",
    "Customer",
    "CustomerPower",
    "Device",
    "Endpoint",
    "ExporterSettings",
    "Feed",
    "Inventory",
    "Notification",
    "NutSource",
    "Port",
    "PowerPolicy",
    "ProbePolicy",
    "SecretError",
    "SecretRef",
    "Site",
    "Smtp",
    "SnmpAuth",
    "load_inventory",
    "parse_inventory_text",
]
