"""The inventory's model: frozen dataclasses describing the contract and what to probe.

Built once at load by threenines.config.inventory_load (the parser); everything downstream trusts these types.
Secrets are never held inline: the file names an environment variable or a file (threenines.config.secrets),
resolved only where the secret is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from threenines.config.policies import PowerPolicy, ProbePolicy
from threenines.config.secrets import SecretRef

if TYPE_CHECKING:
    from threenines.config.applications import ApplicationCheck

SERVICES = ("connectivity", "power")
CONTACT_LANGUAGES = ("en", "zh-CN")  # contacts.language: the message catalogues of threenines.notify

# RFC 3414 §11.2: a USM password shorter than 8 octets is refused (net-snmp and pysnmp refuse it too; pysnmp
# does so with an exception whose message holds the key).
V3_KEY_MIN_LENGTH = 8
V3_KEY_RULE = "SNMPv3 keys need at least 8 characters (RFC 3414)"


class TargetKey(NamedTuple):
    """What every step names a contract target by: a port, a customer's power, an application."""

    customer: str
    service: str  # one of SERVICES
    target: str



# What a prober calls with each result (target, when, True answered / False failed / None no evidence): the
# contract engine's observe, or a filter in front of it (contract.vantage_health).
Observer = Callable[[TargetKey, float, "bool | None"], None]
# The answered probes of several targets at one stamp, in one call: what `observe(key, at, True)` for each key,
# in order, does. A prober that finishes probes in batches (the ping scheduler: one read of the socket) saves a
# call per probe down the chain.
AnswersObserver = Callable[[float, Sequence[TargetKey]], None]
# A sink may take a batch of answers as tokens instead of keys: what its `resolve(key)` gave for each target
# (the contract engine's: the target's machine), which a prober keeps with its per-target state and resolves once.
# Finding the target by its key cost a hash of the key and a dict entry, both cold, ~1 µs a probe. A token of None
# is a target the sink does not know (yet): the prober asks again at its next answer.
Resolver = Callable[[TargetKey], object]
TokensObserver = Callable[[float, Sequence[object]], None]


def one_by_one(observe: Observer) -> AnswersObserver:
    """An AnswersObserver for a sink that takes results one at a time."""
    def observe_answers(at: float, keys: Sequence[TargetKey]) -> None:
        for key in keys:
            observe(key, at, True)
    return observe_answers


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
class Canary:
    """An address the provider owns on the path to a site (its upstream router, a reference port): while none
    of a site's canaries answers, this exporter's probes of the site's customers are no evidence
    (threenines.contract.vantage_health, docs/ha.md "Vantage health")."""

    id: str
    address: str
    policy: ProbePolicy  # threshold unused: one probe of every canary failing makes the vantage blind

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    canaries: tuple[Canary, ...] = ()


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
    # The six per-port probe families (threenines_probe_total, …_rtt_seconds, …; docs/metrics.md). Every probe
    # changes them, so they are most of what a scrape costs the exporter; false leaves them out.
    probe_metrics: bool = True


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

    def canaries(self) -> Iterator[tuple[Site, Canary]]:
        for site in self.sites:
            for canary in site.canaries:
                yield site, canary

    def device(self, device_id: str) -> Device:
        return next(d for d in self.devices if d.id == device_id)

    def auth(self, auth_id: str) -> SnmpAuth:
        return next(a for a in self.auths if a.id == auth_id)

