"""The customer's applications the provider watches (`customers[].applications:`): YAML → frozen dataclasses.

The contract's emergency monitoring covers whether the customer's WWW, e-mail and FTP applications run. Each
entry is one *check* (its id is the contract target, `service="application"`) of one kind — `http` (also for
https URLs), `smtp`, `imap`, `pop3`, `ftp` or `tcp` — with its own cadence: `interval`, `threshold` and
`timeout` default to the customer's ping policy (timeout: 10 s, at most half the interval) and can be set per
check, as for ports.
Secrets (a basic-auth or FTP password) are references, as everywhere in the inventory.

TLS for the mail and FTP kinds: `starttls: true` (the issue's key; also `tls: starttls`) upgrades the plain
connection (SMTP STARTTLS, IMAP STARTTLS, POP3 STLS, FTP AUTH TLS); `tls: implicit` speaks TLS from the first
byte (SMTPS 465, IMAPS 993, POP3S 995; the address's default port follows). FTP has explicit FTPS only:
implicit FTPS (port 990) was never standardised and is refused with that fix.

Parsed by inventory_load.py (it imports this module where a customer is parsed); probes/app_checks.py runs the
checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from threenines.config.configfile import Errors, Node, clean_items, format_duration, parse_host_port, shown
from threenines.config.policies import INTERVAL_BOUNDS, TIMEOUT_BOUNDS, ProbePolicy
from threenines.config.secrets import SecretRef, secret_ref

T = TypeVar("T")

KINDS = ("http", "smtp", "imap", "pop3", "ftp", "tcp")
TLS_MODES = ("starttls", "implicit")
# The address's default port per kind: (plain or STARTTLS, implicit TLS).
DEFAULT_PORTS = {"smtp": (25, 465), "imap": (143, 993), "pop3": (110, 995), "ftp": (21, 0)}
ANONYMOUS_USERS = ("anonymous", "ftp")  # FTP logins that may go without a password reference
ANONYMOUS_PASSWORD = "threenines@"  # what an anonymous login sends when no password is given (RFC 1635)
DEFAULT_TIMEOUT = 10.0
MAX_EXPECT_BYTES = 1024  # send:/expect: of a tcp check: a banner, a short command
HOST_HEADER_RE = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")
SERVER_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
HELO_RE = SERVER_NAME_RE
FTP_USER_RE = re.compile(r"[!-~]{1,128}")  # printable, no space or CR/LF: it goes on the USER line as is


@dataclass(frozen=True)
class AppPolicy:
    interval: float
    threshold: int
    timeout: float


@dataclass(frozen=True)
class Tls:
    """How a check verifies the server's certificate: on by default, against ca_file or the system's CAs, for
    server_name (SNI and the name checked; default: the URL's or address's host)."""

    verify: bool = True
    ca_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class HttpCheck:
    url: str
    tls: Tls | None  # None: plain http
    host: str  # where to connect (the URL's host)
    port: int
    path: str  # the request target, with its query
    expect_status: tuple[int, ...] = (200,)
    body: str | None = None  # a regular expression the body must match (re.search)
    host_header: str | None = None  # default: the URL's host[:port]
    ip_version: int | None = None  # 4 or 6: the family to resolve and connect with; None: either
    username: str | None = None  # basic auth
    password: SecretRef | None = None


@dataclass(frozen=True)
class SmtpCheck:
    host: str
    port: int
    starttls: bool = False
    tls: Tls | None = None  # with starttls or implicit_tls
    helo: str = "threenines.invalid"
    ip_version: int | None = None
    implicit_tls: bool = False  # SMTPS (465): TLS from the first byte


@dataclass(frozen=True)
class MailboxCheck:
    """imap or pop3 (the check's kind says which): the server's greeting, optionally over TLS."""

    host: str
    port: int
    starttls: bool = False  # IMAP STARTTLS / POP3 STLS
    implicit_tls: bool = False  # IMAPS 993 / POP3S 995
    tls: Tls | None = None  # with starttls or implicit_tls
    ip_version: int | None = None


@dataclass(frozen=True)
class FtpCheck:
    host: str
    port: int
    starttls: bool = False  # explicit FTPS: AUTH TLS
    tls: Tls | None = None  # with starttls
    username: str | None = None  # login: USER/PASS; None: the 220 banner only
    password: SecretRef | None = None  # None with an anonymous username: ANONYMOUS_PASSWORD
    ip_version: int | None = None


@dataclass(frozen=True)
class TcpCheck:
    host: str
    port: int
    send: str | None = None
    expect: str | None = None  # a regular expression the first answer must match
    ip_version: int | None = None


Spec = HttpCheck | SmtpCheck | MailboxCheck | FtpCheck | TcpCheck


@dataclass(frozen=True)
class ApplicationCheck:
    id: str
    kind: str  # one of KINDS
    spec: Spec
    policy: AppPolicy

    @property
    def address(self) -> str:
        """What the customer's messages name: the URL, or host:port."""
        if isinstance(self.spec, HttpCheck):
            return self.spec.url
        host = f"[{self.spec.host}]" if ":" in self.spec.host else self.spec.host
        return f"{host}:{self.spec.port}"


CHECK_KEYS = ("id", *KINDS, "interval", "threshold", "timeout")
_HTTP_KEYS = ("url", "expect_status", "body", "verify", "ca_file", "server_name", "host", "ip_version", "basic_auth")
_TLS_KEYS = ("starttls", "tls", "verify", "ca_file", "server_name")
_SMTP_KEYS = ("address", *_TLS_KEYS, "helo", "ip_version")
_MAILBOX_KEYS = ("address", *_TLS_KEYS, "ip_version")
_FTP_KEYS = ("address", *_TLS_KEYS, "login", "ip_version")
_TCP_KEYS = ("address", "send", "expect", "ip_version")


def parse_applications(node: Node, ping: ProbePolicy, errors: Errors) -> tuple[ApplicationCheck, ...]:
    checks = clean_items(errors, node.sequence(), lambda n: _check(n, ping, errors), "application")
    return tuple(check for _, check in checks)


def _check(node: Node, ping: ProbePolicy, errors: Errors) -> ApplicationCheck:
    f = node.mapping(CHECK_KEYS, required=("id",), partial=True)
    kinds = [k for k in KINDS if k in f]
    if len(kinds) != 1:
        node.fail(f"each application is exactly one of {', '.join(k + ':' for k in KINDS)} "
                  f"(found {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    ident = errors.attempt(lambda: f["id"].identifier(), "")
    policy = _policy(f, ping, node, errors)
    parsers: dict[str, Callable[[Node], Spec]] = {
        "http": _http, "smtp": _smtp, "imap": lambda n: _mailbox(n, "imap"), "pop3": lambda n: _mailbox(n, "pop3"),
        "ftp": _ftp, "tcp": _tcp}
    spec = parsers[kind](f[kind])
    return ApplicationCheck(id=ident, kind=kind, spec=spec, policy=policy)


def _policy(f: dict[str, Node], ping: ProbePolicy, node: Node, errors: Errors) -> AppPolicy:
    def value(key: str, read: Callable[[Node], T], default: T) -> T:
        return errors.attempt(lambda: read(f[key]), default) if key in f else default

    mark = errors.count
    interval = value("interval", lambda n: n.duration_within(*INTERVAL_BOUNDS), ping.interval)
    threshold = value("threshold", lambda n: n.integer(1, 100), ping.threshold)
    timeout = value("timeout", lambda n: n.duration_within(*TIMEOUT_BOUNDS), min(DEFAULT_TIMEOUT, interval / 2))
    if errors.count == mark and timeout >= interval:
        errors.add(f["timeout" if "timeout" in f else "interval"].error(
            f"the check's timeout ({format_duration(timeout)}) must be shorter than its interval "
            f"({format_duration(interval)}): lower timeout or raise interval"))
    return AppPolicy(interval=interval, threshold=threshold, timeout=timeout)


def _ip_version(node: Node) -> int:
    return int(node.choice(("4", "6")))


def _tls(f: dict[str, Node]) -> Tls:
    verify = f["verify"].boolean() if "verify" in f else True
    if not verify and "ca_file" in f:
        f["ca_file"].fail("ca_file: is used only with verify: true; remove one of them")
    return Tls(
        verify=verify,
        ca_file=f["ca_file"].string() if "ca_file" in f else None,
        server_name=f["server_name"].string(SERVER_NAME_RE, "a host name for SNI and the certificate check")
        if "server_name" in f else None,
    )


def _status(node: Node) -> tuple[int, ...]:
    nodes = [node] if node.is_scalar else node.sequence()
    if not nodes:
        node.fail("give at least one status, e.g. [200, 301]")
    return tuple(n.integer(100, 599) for n in nodes)


def _regex(node: Node) -> str:
    pattern = node.string()
    if len(pattern) > MAX_EXPECT_BYTES:
        node.fail(f"the expression is longer than {MAX_EXPECT_BYTES} characters: shorten it")
    try:
        re.compile(pattern)
    except re.error as err:
        node.fail(f"{shown(pattern)} is not a regular expression ({err}): fix it or quote it")
    return pattern


def _http(node: Node) -> HttpCheck:
    f = node.mapping(_HTTP_KEYS, required=("url",))
    url = f["url"].string()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        f["url"].fail(f"{shown(url)} is not an http:// or https:// URL with a host, e.g. https://www.example.com/")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        f["url"].fail(f"{shown(url)} has a port out of range 1-65535")
    if parts.username or parts.password:
        f["url"].fail("credentials are never written in the URL: use basic_auth: {username: NAME, password: "
                      "{env: VARIABLE}}")
    https = parts.scheme == "https"
    for key in ("verify", "ca_file", "server_name"):
        if key in f and not https:
            f[key].fail(f"{key}: is for https:// URLs; this one is plain http")
    username = password = None
    if "basic_auth" in f:
        auth = f["basic_auth"].mapping(("username", "password"), required=("username", "password"))
        username = auth["username"].string()
        password = secret_ref(auth["password"])
    return HttpCheck(
        url=url,
        tls=_tls(f) if https else None,
        host=parts.hostname,
        port=port,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        expect_status=_status(f["expect_status"]) if "expect_status" in f else (200,),
        body=_regex(f["body"]) if "body" in f else None,
        host_header=f["host"].string(HOST_HEADER_RE, "a host name, host:port or [IPv6]:port")
        if "host" in f else None,
        ip_version=_ip_version(f["ip_version"]) if "ip_version" in f else None,
        username=username,
        password=password,
    )


def _address(node: Node, default_port: int) -> tuple[str, int]:
    try:
        return parse_host_port(node.raw, default_port, port_zero=default_port == 0)
    except ValueError as err:
        node.fail(str(err))


def _tls_mode(f: dict[str, Node], kind: str) -> str | None:
    """`starttls: true` or `tls: starttls|implicit` → "starttls", "implicit" or None (plain); the certificate
    keys only with one of them."""
    starttls = f["starttls"].boolean() if "starttls" in f else False
    mode = f["tls"].choice(TLS_MODES) if "tls" in f else None
    if starttls and mode is not None:
        f["tls"].fail("give either starttls: true or tls:, not both")
    if mode == "implicit" and DEFAULT_PORTS[kind][1] == 0:
        f["tls"].fail("FTP over implicit TLS is not supported: use starttls: true (explicit FTPS, AUTH TLS)")
    mode = "starttls" if starttls else mode
    for key in ("verify", "ca_file", "server_name"):
        if key in f and mode is None:
            f[key].fail(f"{key}: is for the TLS certificate check: add starttls: true or tls: implicit, "
                        "or remove it")
    return mode


def _smtp(node: Node) -> SmtpCheck:
    f = node.mapping(_SMTP_KEYS, required=("address",))
    mode = _tls_mode(f, "smtp")
    host, port = _address(f["address"], DEFAULT_PORTS["smtp"][int(mode == "implicit")])
    return SmtpCheck(
        host=host, port=port, starttls=mode == "starttls", implicit_tls=mode == "implicit",
        tls=_tls(f) if mode else None,
        helo=f["helo"].string(HELO_RE, "a host name to say in EHLO") if "helo" in f else SmtpCheck.helo,
        ip_version=_ip_version(f["ip_version"]) if "ip_version" in f else None,
    )


def _mailbox(node: Node, kind: str) -> MailboxCheck:
    f = node.mapping(_MAILBOX_KEYS, required=("address",))
    mode = _tls_mode(f, kind)
    host, port = _address(f["address"], DEFAULT_PORTS[kind][int(mode == "implicit")])
    return MailboxCheck(host=host, port=port, starttls=mode == "starttls", implicit_tls=mode == "implicit",
                        tls=_tls(f) if mode else None,
                        ip_version=_ip_version(f["ip_version"]) if "ip_version" in f else None)


def _ftp(node: Node) -> FtpCheck:
    f = node.mapping(_FTP_KEYS, required=("address",))
    mode = _tls_mode(f, "ftp")
    host, port = _address(f["address"], DEFAULT_PORTS["ftp"][0])
    username = password = None
    if "login" in f:
        login = f["login"].mapping(("username", "password"), required=("username",))
        username = login["username"].string(FTP_USER_RE, "a user name of printable characters without spaces")
        if "password" in login:
            password = secret_ref(login["password"])
        elif username.lower() not in ANONYMOUS_USERS:
            login["username"].fail(f"user {shown(username)} needs a password: add password: {{env: VARIABLE}} or "
                                   "{file: /path/to/secret}")
    return FtpCheck(host=host, port=port, starttls=mode == "starttls", tls=_tls(f) if mode else None,
                    username=username, password=password,
                    ip_version=_ip_version(f["ip_version"]) if "ip_version" in f else None)


def _tcp(node: Node) -> TcpCheck:
    f = node.mapping(_TCP_KEYS, required=("address",))
    host, port = _address(f["address"], 0)
    if port == 0:
        f["address"].fail(f"{shown(f['address'].raw)} has no port: write HOST:PORT, e.g. 192.0.2.10:443")
    send = None
    if "send" in f:
        send = f["send"].raw
        if not send or len(send.encode()) > MAX_EXPECT_BYTES:
            f["send"].fail(f"send: must be 1 to {MAX_EXPECT_BYTES} bytes")
    return TcpCheck(host=host, port=port, send=send, expect=_regex(f["expect"]) if "expect" in f else None,
                    ip_version=_ip_version(f["ip_version"]) if "ip_version" in f else None)
