"""The inventory: one YAML file → frozen dataclasses describing the contract and what to probe.

Parsed once at load; everything downstream trusts these types. Secrets are never held inline: the file
names an environment variable or a file, resolved only where the secret is used. At load a secret that is
already there is read once, only to refuse one that cannot work (empty, or an SNMPv3 key under 8 characters).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from threenines.configfile import ConfigError, Node, load, load_text, unique_ids

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")
ID_RULE = "use letters, digits and _ . : - (start with a letter or digit, at most 63 characters)"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")
URL_RE = re.compile(r"https?://[^\s]+")
HOSTPORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s]+)(?::(?P<port>[0-9]{1,5}))?")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

SERVICES = ("connectivity", "power")


# RFC 3414 §11.2: a USM password shorter than 8 octets is refused (net-snmp and pysnmp refuse it too; pysnmp
# does so with an exception whose message holds the key).
V3_KEY_MIN_LENGTH = 8
V3_KEY_RULE = "SNMPv3 keys need at least 8 characters (RFC 3414)"
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
            return Path(self.file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8 text"
            raise SecretError(f"cannot read secret file {self.file}: {reason}", self.at) from None

    def _home(self) -> str:
        return self.env if self.env is not None else str(self.file)

    def describe(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    def __str__(self) -> str:
        return f"<secret {self.describe()}>"


@dataclass(frozen=True)
class ProbePolicy:
    """How one port is pinged and when its failures become an outage (DESIGN.md §1)."""

    interval: float = 300.0
    threshold: int = 2
    packets: int = 3
    timeout: float = 2.0
    packet_interval: float = 0.2


@dataclass(frozen=True)
class PowerPolicy:
    interval: float = 60.0
    threshold: int = 2


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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(s for s, on in (("connectivity", bool(self.ports)), ("power", self.power is not None)) if on)


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


def load_inventory(path: str | Path) -> Inventory:
    return parse(load(path))


def parse_inventory_text(text: str, source: str = "<inventory>") -> Inventory:
    return parse(load_text(text, source))


def parse(root: Node) -> Inventory:
    top = root.mapping(
        ("exporter", "notification", "defaults", "sites", "customers", "auth", "devices"),
        required=("customers",),
    )
    defaults = _defaults(top["defaults"]) if "defaults" in top else (ProbePolicy(), PowerPolicy())
    sites = tuple(_site(n) for n in top["sites"].sequence()) if "sites" in top else ()
    if sites:
        unique_ids(((s.id, n) for s, n in zip(sites, top["sites"].sequence(), strict=True)), "site")
    auths = tuple(_auth(n) for n in top["auth"].sequence()) if "auth" in top else ()
    if auths:
        unique_ids(((a.id, n) for a, n in zip(auths, top["auth"].sequence(), strict=True)), "auth")
    devices = tuple(_device(n) for n in top["devices"].sequence()) if "devices" in top else ()
    if devices:
        unique_ids(((d.id, n) for d, n in zip(devices, top["devices"].sequence(), strict=True)), "device")
    customer_nodes = top["customers"].sequence()
    if not customer_nodes:
        top["customers"].fail("at least one customer is needed")
    customers = tuple(_customer(n, *defaults) for n in customer_nodes)
    unique_ids(((c.id, n) for c, n in zip(customers, customer_nodes, strict=True)), "customer")
    inventory = Inventory(
        source=root.source,
        exporter=_exporter(top["exporter"]) if "exporter" in top else ExporterSettings(),
        notification=_notification(top["notification"]) if "notification" in top else Notification(),
        sites=sites,
        customers=customers,
        auths=auths,
        devices=devices,
    )
    _check_references(inventory, top)
    return inventory


def _check_references(inv: Inventory, top: dict[str, Node]) -> None:
    site_ids = {s.id for s in inv.sites}
    auth_ids = {a.id for a in inv.auths}
    devices = {d.id: d for d in inv.devices}
    for c_node, customer in zip(top["customers"].sequence(), inv.customers, strict=True):
        fields = c_node.mapping(_CUSTOMER_KEYS)
        if site_ids and customer.site not in site_ids:
            fields["site"].fail(f"unknown site {customer.site!r}; defined sites: {', '.join(sorted(site_ids))}")
        if customer.power is not None:
            feed_nodes = fields["power"].mapping(_POWER_KEYS)["feeds"].sequence()
            for f_node, feed in zip(feed_nodes, customer.power.feeds, strict=True):
                pdu = devices.get(feed.pdu)
                if pdu is None:
                    f_node.mapping(_FEED_KEYS)["pdu"].fail(
                        f"unknown device {feed.pdu!r}; define it under devices:"
                    )
                elif pdu.kind != "pdu":
                    f_node.mapping(_FEED_KEYS)["pdu"].fail(f"device {feed.pdu!r} is a {pdu.kind}, not a pdu")
    for d_node, device in zip(top["devices"].sequence() if "devices" in top else [], inv.devices, strict=True):
        fields = d_node.mapping(_DEVICE_KEYS)
        if device.auth not in auth_ids:
            valid = ", ".join(sorted(auth_ids)) or "none defined: add an auth: section"
            fields["auth"].fail(f"unknown auth {device.auth!r}; defined: {valid}")
        if device.input != "mains" and device.input not in devices:
            fields["input"].fail(f"unknown device {device.input!r}; use 'mains' or the id of a UPS or PDU")
        if site_ids and device.site not in site_ids:
            fields["site"].fail(f"unknown site {device.site!r}; defined sites: {', '.join(sorted(site_ids))}")
    _check_input_cycles(inv, top)


def _check_input_cycles(inv: Inventory, top: dict[str, Node]) -> None:
    devices = {d.id: d for d in inv.devices}
    for d_node, device in zip(top["devices"].sequence() if "devices" in top else [], inv.devices, strict=True):
        chain = [device.id]
        current = device
        while current.input != "mains":
            current = devices[current.input]
            if current.id in chain:
                d_node.mapping(_DEVICE_KEYS)["input"].fail(
                    f"power inputs form a loop: {' -> '.join([*chain, current.id])}"
                )
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
        ref = SecretRef(file=fields["file"].string(), at=at)
    ref.check_at_load(min_length, rule)
    return ref


_PING_KEYS = ("interval", "threshold", "packets", "timeout", "packet_interval")


def _probe_policy(node: Node, base: ProbePolicy) -> ProbePolicy:
    return _probe_policy_from_fields(node.mapping(_PING_KEYS), base, node)


def _power_policy(node: Node, base: PowerPolicy) -> PowerPolicy:
    return _power_policy_from_fields(node.mapping(("interval", "threshold")), base)


def _defaults(node: Node) -> tuple[ProbePolicy, PowerPolicy]:
    f = node.mapping(("ping", "power"))
    ping = _probe_policy(f["ping"], ProbePolicy()) if "ping" in f else ProbePolicy()
    power = _power_policy(f["power"], PowerPolicy()) if "power" in f else PowerPolicy()
    return ping, power


def _site(node: Node) -> Site:
    f = node.mapping(("id", "name"), required=("id",))
    ident = _ident(f["id"])
    return Site(id=ident, name=f["name"].string() if "name" in f else ident)


def _objective(node: Node) -> float:
    raw = node.raw.strip()
    try:
        # round(): 99.9 / 100 is 0.9990000000000001 in binary floating point.
        value = round(float(raw[:-1]) / 100, 12) if raw.endswith("%") else float(raw)
    except ValueError:
        node.fail(f"{raw!r} is not an objective: write 99.9% or 0.999")
    if not 0 < value < 1:
        node.fail(f"{raw!r} must be between 0 and 100% (exclusive): write 99.9% or 0.999")
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
        node.fail(f"{name!r} is not a known time zone{hint}")
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


def _contacts(node: Node) -> Contacts:
    f = node.mapping(("version", "notify"), required=("version", "notify"))
    notify = tuple(_contact(n) for n in f["notify"].sequence())
    if not notify:
        f["notify"].fail("at least one designated contact is needed (the 15-minute promise is to them)")
    return Contacts(version=f["version"].string(), notify=notify)


def _port(node: Node, base: ProbePolicy) -> Port:
    f = node.mapping(("id", "address", *_PING_KEYS), required=("id", "address"))
    policy = _probe_policy_from_fields({k: f[k] for k in _PING_KEYS if k in f}, base, node)
    return Port(id=_ident(f["id"]), address=f["address"].ip_address(), policy=policy)


def _probe_policy_from_fields(fields: dict[str, Node], base: ProbePolicy, node: Node) -> ProbePolicy:
    values = {
        "interval": fields["interval"].duration(0.0) if "interval" in fields else base.interval,
        "threshold": fields["threshold"].integer(1, 100) if "threshold" in fields else base.threshold,
        "packets": fields["packets"].integer(1, 20) if "packets" in fields else base.packets,
        "timeout": fields["timeout"].duration(0.0, 60) if "timeout" in fields else base.timeout,
        "packet_interval": fields["packet_interval"].duration(0.0, 10)
        if "packet_interval" in fields else base.packet_interval,
    }
    policy = ProbePolicy(**values)
    probe_time = policy.timeout + (policy.packets - 1) * policy.packet_interval
    if probe_time >= policy.interval:
        node.fail(
            f"a probe takes up to {probe_time:g}s (timeout + (packets-1) × packet_interval), which must be "
            f"shorter than the interval ({policy.interval:g}s): lower timeout/packets or raise interval"
        )
    return policy


_CUSTOMER_KEYS = ("id", "name", "site", "timezone", "objective", "notification_deadline", "contacts",
                  "ping", "ports", "power")
_POWER_KEYS = ("feeds", "interval", "threshold")
_FEED_KEYS = ("id", "pdu", "outlets")


def _feed(node: Node) -> Feed:
    f = node.mapping(_FEED_KEYS, required=("id", "pdu", "outlets"))
    outlets = tuple(f["outlets"].string_list())
    if not outlets:
        f["outlets"].fail("a feed needs at least one outlet")
    return Feed(id=_ident(f["id"]), pdu=_ident(f["pdu"]), outlets=outlets)


def _customer_power(node: Node, base: PowerPolicy) -> CustomerPower:
    f = node.mapping(_POWER_KEYS, required=("feeds",))
    feed_nodes = f["feeds"].sequence()
    if not feed_nodes:
        f["feeds"].fail("at least one feed is needed (A/B feeds: list both)")
    feeds = tuple(_feed(n) for n in feed_nodes)
    unique_ids(((x.id, n) for x, n in zip(feeds, feed_nodes, strict=True)), "feed")
    policy = _power_policy_from_fields({k: f[k] for k in ("interval", "threshold") if k in f}, base)
    return CustomerPower(feeds=feeds, policy=policy)


def _power_policy_from_fields(fields: dict[str, Node], base: PowerPolicy) -> PowerPolicy:
    return PowerPolicy(
        interval=fields["interval"].duration(minimum=0.0) if "interval" in fields else base.interval,
        threshold=fields["threshold"].integer(1, 100) if "threshold" in fields else base.threshold,
    )


def _customer(node: Node, ping: ProbePolicy, power: PowerPolicy) -> Customer:
    f = node.mapping(_CUSTOMER_KEYS, required=("id", "timezone", "contacts"))
    ident = _ident(f["id"])
    customer_ping = _probe_policy(f["ping"], ping) if "ping" in f else ping
    port_nodes = f["ports"].sequence() if "ports" in f else []
    ports = tuple(_port(n, customer_ping) for n in port_nodes)
    unique_ids(((p.id, n) for p, n in zip(ports, port_nodes, strict=True)), "port")
    customer_power = _customer_power(f["power"], power) if "power" in f else None
    if not ports and customer_power is None:
        node.fail("a customer needs ports: (connectivity) or power: (feeds), or both")
    return Customer(
        id=ident,
        name=f["name"].string() if "name" in f else ident,
        site=_ident(f["site"]) if "site" in f else "",
        timezone=_timezone(f["timezone"]),
        objective=_objective(f["objective"]) if "objective" in f else 0.999,
        notification_deadline=f["notification_deadline"].duration(0.0, 86400)
        if "notification_deadline" in f else 900.0,
        contacts=_contacts(f["contacts"]),
        ports=ports,
        power=customer_power,
    )


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


_DEVICE_KEYS = ("id", "type", "site", "address", "auth", "profile", "input", "interval", "timeout", "retries")


def _host_port(node: Node, default_port: int) -> tuple[str, int]:
    match = HOSTPORT_RE.fullmatch(node.raw.strip())
    if not match:
        node.fail(f"{node.raw!r} is not HOST or HOST:PORT")
    host = match["host"].strip("[]")
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        node.fail(f"port {port} is out of range 1-65535")
    return host, port


def _device(node: Node) -> Device:
    f = node.mapping(_DEVICE_KEYS, required=("id", "type", "address", "auth"))
    host, port = _host_port(f["address"], 161)
    return Device(
        id=_ident(f["id"]),
        kind=f["type"].choice(("ups", "pdu")),
        site=_ident(f["site"]) if "site" in f else "",
        host=host,
        port=port,
        auth=_ident(f["auth"]),
        profile=f["profile"].string() if "profile" in f else "auto",
        input=f["input"].string() if "input" in f else "mains",
        interval=f["interval"].duration(0.0) if "interval" in f else 60.0,
        timeout=f["timeout"].duration(0.0, 60) if "timeout" in f else 2.0,
        retries=f["retries"].integer(0, 10) if "retries" in f else 1,
    )


def _endpoint(node: Node) -> Endpoint:
    f = node.mapping(("url", "token"), required=("url",))
    return Endpoint(url=f["url"].string(URL_RE, "an http(s) URL"), token=_secret(f["token"]) if "token" in f else None)


def _notification(node: Node) -> Notification:
    f = node.mapping(("audit_webhook", "sms_gateway", "smtp"))
    smtp = None
    if "smtp" in f:
        s = f["smtp"].mapping(("smarthost", "from", "username", "password", "require_tls"),
                              required=("smarthost", "from"))
        _host_port(s["smarthost"], 25)
        smtp = Smtp(
            smarthost=s["smarthost"].string(),
            sender=s["from"].string(EMAIL_RE, "an e-mail address"),
            username=s["username"].string() if "username" in s else None,
            password=_secret(s["password"]) if "password" in s else None,
            require_tls=s["require_tls"].boolean() if "require_tls" in s else True,
        )
    return Notification(
        audit_webhook=_endpoint(f["audit_webhook"]) if "audit_webhook" in f else None,
        sms_gateway=_endpoint(f["sms_gateway"]) if "sms_gateway" in f else None,
        smtp=smtp,
    )


def _exporter(node: Node) -> ExporterSettings:
    f = node.mapping(("listen", "state_dir", "max_concurrent_probes", "audit_token"))
    if "listen" in f:
        _host_port(f["listen"], 9839)
    return ExporterSettings(
        listen=f["listen"].string() if "listen" in f else ExporterSettings.listen,
        state_dir=f["state_dir"].string() if "state_dir" in f else ExporterSettings.state_dir,
        max_concurrent_probes=f["max_concurrent_probes"].integer(1, 100_000)
        if "max_concurrent_probes" in f else ExporterSettings.max_concurrent_probes,
        audit_token=_secret(f["audit_token"]) if "audit_token" in f else None,
    )


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
