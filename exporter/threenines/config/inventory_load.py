"""The inventory's parser: one YAML file → the model of threenines.config.inventory.

Every error in the file is reported at once: each field is parsed on its own (Fields.value with errors), a bad
one is recorded and replaced by a stand-in, and an item (site, customer, port, device, ...) with any error is
left out of the checks that follow (clean_items), so one mistake is reported once and not again as "unknown
device". Nothing is returned from a file with errors. A secret that is already there is read once, only to
refuse one that cannot work (empty, or an SNMPv3 key under 8 characters).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from threenines.config.applications import ApplicationCheck, parse_applications
from threenines.config.configfile import (
    ID_RE,
    ID_RULE,
    Errors,
    Fields,
    Node,
    clean_items,
    format_duration,
    is_ip,
    load,
    load_text,
    parse_host_port,
    shown,
)
from threenines.config.inventory import (
    V3_KEY_MIN_LENGTH,
    V3_KEY_RULE,
    Canary,
    Contact,
    Contacts,
    Customer,
    CustomerPower,
    Device,
    Endpoint,
    ExporterSettings,
    Feed,
    Inventory,
    Notification,
    NutSource,
    Port,
    Site,
    Smtp,
    SnmpAuth,
)
from threenines.config.policies import (
    INTERVAL_BOUNDS,
    PACKET_INTERVAL_BOUNDS,
    TIMEOUT_BOUNDS,
    PowerPolicy,
    ProbePolicy,
)
from threenines.config.secrets import SecretRef, secret_ref

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")
URL_RE = re.compile(r"https?://[^\s]+")
NUT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
CONTACT_LANGUAGES = ("en", "zh-CN")  # contacts.language: the message catalogues of threenines.notify
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")

DEADLINE_BOUNDS = (1.0, 86400.0)  # notification_deadline: 1s..1d
# Values that become Prometheus label values are bounded like ids (ID_RE: at most 63 characters).
NAME_MAX_LENGTH = 256  # customer and site names
LABEL_MAX_LENGTH = 128  # contacts version, outlet
DEFAULT_LISTEN_PORT = 9839
SNMP_PORT = 161  # a device's address without a port
NUT_PORT = 3493  # the same, with profile: nut (upsd)

_TOP_KEYS = ("exporter", "notification", "defaults", "sites", "customers", "auth", "devices")
_PING_KEYS = ("interval", "threshold", "packets", "timeout", "packet_interval")
_CANARY_PING_KEYS = ("interval", "packets", "timeout", "packet_interval")  # no threshold: one probe decides
CANARY_RATE = 5  # canary probes per port interval, by default (defaults.ping.interval / 5)
_CUSTOMER_KEYS = ("id", "name", "site", "timezone", "objective", "notification_deadline", "contacts",
                  "ping", "ports", "power", "applications", "applications_billable")
_POWER_KEYS = ("feeds", "interval", "threshold")
_FEED_KEYS = ("id", "pdu", "outlets")
_AUTH_KEYS = ("id", "version", "community", "username", "security_level", "auth_protocol", "auth_key",
              "priv_protocol", "priv_key", "context")
_DEVICE_KEYS = ("id", "type", "site", "address", "auth", "profile", "input", "interval", "timeout", "retries", "nut")


def load_inventory(path: str | Path) -> Inventory:
    return parse(load(path))


def parse_inventory_text(text: str, source: str = "<inventory>") -> Inventory:
    return parse(load_text(text, source))


def parse(root: Node) -> Inventory:
    errors = Errors()
    top = root.collecting(errors).mapping(_TOP_KEYS, required=("customers",))
    ping, power = top.value("defaults", lambda n: _defaults(n, errors), (ProbePolicy(), PowerPolicy()), errors)
    lists = {key: errors.attempt(top[key].sequence, None) if key in top else []  # None: not a list
             for key in ("sites", "auth", "devices", "customers")}
    if lists["customers"] == []:  # None (not a list) is already reported
        errors.add(top["customers"].error("at least one customer is needed"))
    site_nodes, auth_nodes, device_nodes, customer_nodes = (nodes or [] for nodes in lists.values())
    sites = clean_items(errors, site_nodes, functools.partial(_site, ping=ping, errors=errors), "site")
    auths = clean_items(errors, auth_nodes, _auth, "auth")
    devices = clean_items(errors, device_nodes, functools.partial(_device, errors=errors), "device")
    customers = clean_items(errors, customer_nodes,
                            functools.partial(_customer, ping=ping, power=power, errors=errors), "customer")
    exporter = top.value("exporter", lambda n: _exporter(n, errors), ExporterSettings(), errors)
    notification = top.value("notification", lambda n: _notification(n, errors), Notification(), errors)
    declared = _Declared(
        sites=_declared(site_nodes), auths=_declared(auth_nodes), devices=_declared(device_nodes),
        clean_devices={d.id: d for _, d in devices})
    _check_references(errors, declared, customers, devices)
    _check_canaries(errors, sites, customers)
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


# -- references between items ----------------------------------------------------------------------


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


def _check_site(errors: Errors, declared: _Declared, node: Node, fields: Fields, what: str) -> None:
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


# -- policies ---------------------------------------------------------------------------------------


def _defaults(node: Node, errors: Errors) -> tuple[ProbePolicy, PowerPolicy]:
    f = node.mapping(("ping", "power"))
    ping = f.value("ping", lambda n: _probe_policy(n, ProbePolicy(), errors), ProbePolicy(), errors)
    power = f.value("power", lambda n: _power_policy(n, PowerPolicy(), errors), PowerPolicy(), errors)
    return ping, power


def _probe_policy(node: Node, base: ProbePolicy, errors: Errors) -> ProbePolicy:
    return _probe_policy_from_fields(node.mapping(_PING_KEYS), base, node, errors)


def _power_policy(node: Node, base: PowerPolicy, errors: Errors) -> PowerPolicy:
    return _power_policy_from_fields(node.mapping(("interval", "threshold")), base, errors)


def _probe_policy_from_fields(f: Fields, base: ProbePolicy, node: Node, errors: Errors) -> ProbePolicy:
    mark = errors.count
    policy = ProbePolicy(
        interval=f.value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), base.interval, errors),
        threshold=f.value("threshold", lambda n: n.integer(1, 100), base.threshold, errors),
        packets=f.value("packets", lambda n: n.integer(1, 20), base.packets, errors),
        timeout=f.value("timeout", lambda n: n.duration_within(*TIMEOUT_BOUNDS), base.timeout, errors),
        packet_interval=f.value("packet_interval", lambda n: n.duration_within(*PACKET_INTERVAL_BOUNDS),
                                base.packet_interval, errors),
    )
    probe_time = policy.timeout + (policy.packets - 1) * policy.packet_interval
    if errors.count == mark and probe_time >= policy.interval:
        errors.add(node.error(
            f"a probe takes up to {probe_time:g}s (timeout + (packets-1) × packet_interval), which must be "
            f"shorter than the interval ({policy.interval:g}s): lower timeout/packets or raise interval"
        ))
    return policy


def _power_policy_from_fields(f: Fields, base: PowerPolicy, errors: Errors) -> PowerPolicy:
    return PowerPolicy(
        interval=f.value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), base.interval, errors),
        threshold=f.value("threshold", lambda n: n.integer(1, 100), base.threshold, errors),
    )


# -- sites and customers ----------------------------------------------------------------------------


def _site(node: Node, ping: ProbePolicy, errors: Errors) -> Site:
    f = node.mapping(("id", "name", "canaries"), required=("id",))
    ident = f["id"].identifier()
    canary_nodes: list[Node] = f.value("canaries", Node.sequence, [], errors)
    # Canaries are cheap and must notice a cut of this exporter's own path before a port's second probe
    # (_check_canaries): by default 5 per port interval, the ports' packets and timeouts.
    base = ProbePolicy(interval=max(INTERVAL_BOUNDS[0], ping.interval / CANARY_RATE), threshold=1,
                       packets=ping.packets, timeout=ping.timeout, packet_interval=ping.packet_interval)
    canaries = tuple(c for _, c in clean_items(errors, canary_nodes, lambda n: _canary(n, base, errors), "canary"))
    return Site(id=ident, name=f.value("name", lambda n: n.text(NAME_MAX_LENGTH), ident), canaries=canaries)


def _canary(node: Node, base: ProbePolicy, errors: Errors) -> Canary:
    f = node.mapping(("id", "address", *_CANARY_PING_KEYS), required=("id", "address"), partial=True)
    ident = f.value("id", Node.identifier, "", errors)
    address = f.value("address", _canary_address, "", errors)
    policy = _probe_policy_from_fields(f, base, node, errors)  # it reads the _CANARY_PING_KEYS only
    return Canary(id=ident, address=address, policy=policy)


def _canary_address(node: Node) -> str:
    address = node.ip_address()
    _unicast(node, address, "canary")
    return address


def _check_canaries(errors: Errors, sites: list[tuple[Node, Site]], customers: list[tuple[Node, Customer]]) -> None:
    """A cut of this exporter's own path must make it blind before any port of the site is probed twice: else
    two failed probes of the cut could determine an outage (docs/ha.md, "Vantage health"). A cut at c is
    noticed by c + canary interval + canary probe time at the latest; a port's first failed probe started no
    earlier than c - its probe time, so its second ends after that + its interval."""
    for site_node, site in sites:
        if not site.canaries:
            continue
        slowest = max(site.canaries, key=lambda c: c.policy.interval + _probe_time(c.policy))
        noticed = slowest.policy.interval + _probe_time(slowest.policy)
        for _, customer in customers:
            if customer.site != site.id:
                continue
            for port in customer.ports:
                allowed = port.policy.interval - _probe_time(port.policy)
                if noticed >= allowed:
                    errors.add(site_node.error(
                        f"site {site.id}: canary {slowest.id} probes every {format_duration(slowest.policy.interval)}"
                        f" (a cut of this exporter's path is noticed within {noticed:g}s), but port {port.id} of "
                        f"customer {customer.id} probes every {format_duration(port.policy.interval)}: the vantage "
                        f"must turn blind before a port's second probe (within {allowed:g}s); set the canaries' "
                        f"interval: (and timeout:) so that interval + probe time < {allowed:g}s"))
                    return


def _probe_time(policy: ProbePolicy) -> float:
    """The longest a probe takes: its last echo request's timeout."""
    return policy.timeout + (policy.packets - 1) * policy.packet_interval


def _customer(node: Node, ping: ProbePolicy, power: PowerPolicy, errors: Errors) -> Customer:
    f = node.mapping(_CUSTOMER_KEYS, required=("id", "timezone", "contacts"), partial=True)
    # Fields in the order an inventory writes them (examples/inventory.yml), so errors are listed in that order.
    ident = f.value("id", Node.identifier, "", errors)
    name = f.value("name", lambda n: n.text(NAME_MAX_LENGTH), ident, errors)
    site = f.value("site", Node.identifier, "", errors)
    timezone = f.value("timezone", _timezone, "UTC", errors)
    objective = f.value("objective", _objective, 0.999, errors)
    deadline = f.value("notification_deadline", lambda n: n.duration_within(*DEADLINE_BOUNDS), 900.0, errors)
    contacts = f.value("contacts", lambda n: _contacts(n, errors), Contacts("", ()), errors)
    customer_ping = f.value("ping", lambda n: _probe_policy(n, ping, errors), ping, errors)
    port_nodes: list[Node] = f.value("ports", Node.sequence, [], errors)
    ports = tuple(port for _, port in clean_items(errors, port_nodes, lambda n: _port(n, customer_ping, errors),
                                                  "port"))
    customer_power = f.value("power", lambda n: _customer_power(n, power, errors), None, errors)
    no_applications: tuple[ApplicationCheck, ...] = ()
    applications = f.value("applications", lambda n: parse_applications(n, customer_ping, errors), no_applications,
                           errors)
    billable = f.value("applications_billable", Node.boolean, False, errors)
    if not port_nodes and "power" not in f:
        errors.add(node.error("a customer needs ports: (connectivity) or power: (feeds), or both"))
    return Customer(id=ident, name=name, site=site, timezone=timezone, objective=objective,
                    notification_deadline=deadline, contacts=contacts, ports=ports, power=customer_power,
                    applications=applications, applications_billable=billable)


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
        url = pd.value("url", _url, "https://events.pagerduty.com/v2/enqueue")
        return Contact(kind, url, secret_ref(pd["routing_key"]))
    hook = value.mapping(("url", "token"), required=("url",))
    token = hook.value("token", secret_ref, None)
    return Contact(kind, _url(hook["url"]), token)


def _contacts(node: Node, errors: Errors) -> Contacts:
    f = node.mapping(("version", "notify", "language"), required=("version", "notify"))
    version = errors.attempt(lambda: f["version"].text(LABEL_MAX_LENGTH), "")
    notify_nodes: list[Node] = errors.attempt(f["notify"].sequence, [])
    notify = tuple(contact for _, contact in clean_items(errors, notify_nodes, _contact, None))
    if not notify_nodes:
        errors.add(f["notify"].error("at least one designated contact is needed (the 15-minute promise is to them)"))
    language = f.value("language", lambda n: n.choice(CONTACT_LANGUAGES), "en", errors)
    return Contacts(version=version, notify=notify, language=language)


# -- ports and power feeds --------------------------------------------------------------------------


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
    ident = f.value("id", Node.identifier, "", errors)
    address = f.value("address", _probe_address, "", errors)
    policy = _probe_policy_from_fields(f, base, node, errors)  # it reads the _PING_KEYS only
    return Port(id=ident, address=address, policy=policy)


def _feed(node: Node) -> Feed:
    f = node.mapping(_FEED_KEYS, required=("id", "pdu", "outlets"))
    outlet_nodes = f["outlets"].sequence() if not f["outlets"].is_scalar else [f["outlets"]]
    if not outlet_nodes:
        f["outlets"].fail("a feed needs at least one outlet")
    # An outlet is matched against the PDU's outlet id or name (Sentry: AA1) and becomes a label value.
    outlets = tuple(n.text(LABEL_MAX_LENGTH) for n in outlet_nodes)
    return Feed(id=f["id"].identifier(), pdu=f["pdu"].identifier(), outlets=outlets)


def _customer_power(node: Node, base: PowerPolicy, errors: Errors) -> CustomerPower:
    f = node.mapping(_POWER_KEYS, required=("feeds",))
    feed_nodes = f["feeds"].sequence()
    if not feed_nodes:
        f["feeds"].fail("at least one feed is needed (A/B feeds: list both)")
    feeds = tuple(feed for _, feed in clean_items(errors, feed_nodes, _feed, "feed"))
    return CustomerPower(feeds=feeds, policy=_power_policy_from_fields(f, base, errors))  # interval, threshold


# -- SNMP auth and devices --------------------------------------------------------------------------


def _auth(node: Node) -> SnmpAuth:
    f = node.mapping(_AUTH_KEYS, required=("id", "version"))
    ident = f["id"].identifier()
    version = f["version"].choice(("1", "2c", "3"))
    if version in ("1", "2c"):
        extra = [k for k in f if k not in ("id", "version", "community")]
        if extra:
            f[extra[0]].fail(f"{extra[0]} is for SNMP v3; v{version} uses community: only")
        if "community" not in f:
            node.fail(f"SNMP v{version} needs community: {{env: VARIABLE}} or {{file: PATH}}")
        return SnmpAuth(id=ident, version=version, community=secret_ref(f["community"]))
    if "community" in f:
        f["community"].fail("SNMP v3 does not use a community; give username/auth_key/priv_key")
    if "username" not in f:
        node.fail("SNMP v3 needs username:")
    level = f.value("security_level", lambda n: n.choice(("noAuthNoPriv", "authNoPriv", "authPriv")), "authPriv")
    needs = {"noAuthNoPriv": (), "authNoPriv": ("auth_key",), "authPriv": ("auth_key", "priv_key")}[level]
    for key in needs:
        if key not in f:
            node.fail(f"security_level {level} needs {key}: {{env: VARIABLE}} or {{file: PATH}}")
    used = {k for key in needs for k in (key, key.replace("_key", "_protocol"))}
    for key in ("auth_key", "priv_key", "auth_protocol", "priv_protocol"):
        if key in f and key not in used:
            f[key].fail(f"{key} is not used with security_level {level}")

    def v3_key(n: Node) -> SecretRef:
        return secret_ref(n, V3_KEY_MIN_LENGTH, V3_KEY_RULE)

    return SnmpAuth(
        id=ident,
        version="3",
        username=f["username"].string(),
        security_level=level,
        auth_protocol=f.value("auth_protocol", lambda n: n.choice(AUTH_PROTOCOLS),
                              "SHA" if "auth_key" in needs else None),
        auth_key=f.value("auth_key", v3_key, None),
        priv_protocol=f.value("priv_protocol", lambda n: n.choice(PRIV_PROTOCOLS),
                              "AES" if "priv_key" in needs else None),
        priv_key=f.value("priv_key", v3_key, None),
        context=f.value("context", lambda n: n.raw, ""),
    )


def _host_port(node: Node, default_port: int) -> tuple[str, int]:
    try:
        return parse_host_port(node.raw, default_port)
    except ValueError as err:
        node.fail(str(err))


def _device_address(node: Node, default_port: int) -> tuple[str, int]:
    host, port = _host_port(node, default_port)
    if is_ip(host):
        _unicast(node, host, "device")
    return host, port


def _device(node: Node, errors: Errors) -> Device:
    nut_profile = node.peek("profile") == "nut"
    f = node.mapping(_DEVICE_KEYS, required=("id", "type", "address", *(() if nut_profile else ("auth",))),
                     partial=True)
    mark = errors.count
    default_port = NUT_PORT if nut_profile else SNMP_PORT
    host, port = f.value("address", lambda n: _device_address(n, default_port), ("", default_port), errors)
    interval = f.value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), 60.0, errors)
    timeout = f.value("timeout", lambda n: n.duration_within(*TIMEOUT_BOUNDS), 2.0, errors)
    if errors.count == mark and timeout >= interval:
        errors.add(f["timeout" if "timeout" in f else "interval"].error(
            f"the SNMP timeout ({format_duration(timeout)}) must be shorter than the poll interval "
            f"({format_duration(interval)}): lower timeout or raise interval"))
    return Device(
        id=f.value("id", Node.identifier, "", errors),
        kind=f.value("type", lambda n: n.choice(("ups", "pdu")), "pdu", errors),
        site=f.value("site", Node.identifier, "", errors),
        host=host,
        port=port,
        auth=f.value("auth", Node.identifier, "", errors),
        profile=f.value("profile", Node.string, "auto", errors),
        input=f.value("input", Node.string, "mains", errors),
        interval=interval,
        timeout=timeout,
        retries=f.value("retries", lambda n: n.integer(0, 10), 1, errors),
        nut=_nut(f, nut_profile, errors),
    )


def _nut(f: Fields, nut_profile: bool, errors: Errors) -> NutSource | None:
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
                         username=n.value("username", lambda u: u.string(NUT_NAME_RE, "a upsd.users name"), None),
                         password=n.value("password", secret_ref, None))

    return f.value("nut", parse, NutSource(""), errors)


# -- notification and the exporter ------------------------------------------------------------------


def _url(node: Node) -> str:
    return node.string(URL_RE, "an http(s) URL")


def _endpoint(node: Node) -> Endpoint:
    f = node.mapping(("url", "token"), required=("url",))
    return Endpoint(url=_url(f["url"]), token=f.value("token", secret_ref, None))


def _smtp(node: Node) -> Smtp:
    s = node.mapping(("smarthost", "from", "username", "password", "require_tls", "ca_file"),
                     required=("smarthost", "from"))
    _host_port(s["smarthost"], 25)
    return Smtp(
        smarthost=s["smarthost"].string(),
        sender=s["from"].string(EMAIL_RE, "an e-mail address"),
        username=s.value("username", Node.string, None),
        password=s.value("password", secret_ref, None),
        require_tls=s.value("require_tls", Node.boolean, True),
        ca_file=s.value("ca_file", Node.string, None),
    )


def _notification(node: Node, errors: Errors) -> Notification:
    f = node.mapping(("audit_webhook", "sms_gateway", "smtp"))
    return Notification(
        audit_webhook=f.value("audit_webhook", _endpoint, None, errors),
        sms_gateway=f.value("sms_gateway", _endpoint, None, errors),
        smtp=f.value("smtp", _smtp, None, errors),
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
    f = node.mapping(("listen", "state_dir", "max_concurrent_probes", "audit_token", "vantage", "probe_metrics"))
    return ExporterSettings(
        listen=f.value("listen", _listen, ExporterSettings.listen, errors),
        state_dir=f.value("state_dir", Node.string, ExporterSettings.state_dir, errors),
        max_concurrent_probes=f.value("max_concurrent_probes", lambda n: n.integer(1, 100_000),
                                      ExporterSettings.max_concurrent_probes, errors),
        audit_token=f.value("audit_token", secret_ref, None, errors),
        vantage=f.value("vantage", _vantage, "", errors),
        probe_metrics=f.value("probe_metrics", Node.boolean, ExporterSettings.probe_metrics, errors),
    )


def _vantage(node: Node) -> str:
    return node.string(ID_RE, f"a vantage name is the vantage label of every series: {ID_RULE}")
