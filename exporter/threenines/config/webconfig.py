"""The Prometheus exporter-toolkit web config file (`--web.config.file`): TLS and basic auth for the exporter.

Operators reuse the file they already have for node_exporter & co. Supported keys: `tls_server_config`
(cert_file, key_file, client_auth_type, client_ca_file, min_version) and `basic_auth_users` (bcrypt hashes).
Anything else in the file is an error, so a typo cannot silently leave the exporter open.

A bcrypt check costs tens of milliseconds of CPU by design, so, as the exporter-toolkit does, a password that
was verified is remembered (a keyed hash of it per user) and the next scrape costs no bcrypt, and one bcrypt
runs at a time. Beyond the toolkit, failed checks are rate limited per client address: a flood of wrong
passwords gets 429 instead of bcrypt time, and good scrapes keep being answered.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import math
import os
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from threenines.config.configfile import ConfigError, Node, load

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"  # 401
    THROTTLED = "throttled"  # 429: this client address failed too often; no bcrypt was spent on it


class AuthGuard:
    """Basic-auth checks that a flood of wrong passwords cannot turn into a CPU denial of service.

    - A password verified for a user is remembered as HMAC-SHA256(per-process random key, user, hash, password):
      the next request with it is compared in microseconds. Wrong credentials are remembered the same way (the
      latest FAILED_CACHE of them), so a scraper configured with a wrong password costs one bcrypt, not one per
      scrape. No password is kept, logged or exposed.
    - Any other request needs a token from its client address's bucket (BURST tokens, REFILL_PER_SECOND): the
      token pays for the bcrypt and is given back when the password was right. An empty bucket is THROTTLED
      without bcrypt. Addresses are IPv4 hosts or IPv6 /64s (one host usually holds a whole /64); the latest
      MAX_CLIENTS of them are kept.
    - One bcrypt runs at a time (the exporter-toolkit's mutex): however many clients fail at once, they take
      one core, and the exporter's probes and scrapes keep the rest.
    """

    BURST = 10
    REFILL_PER_SECOND = 1.0
    MAX_CLIENTS = 10_000
    FAILED_CACHE = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()
        self._verified: dict[str, bytes] = {}  # user -> digest of the password verified last
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def check(self, user: str, password: bytes, hashed: bytes | None, client: str) -> Verdict:
        """hashed: the user's bcrypt hash, None for an unknown user (which costs a bcrypt all the same, so
        timing does not tell which users exist)."""
        digest = hmac.new(self._key, b"\0".join((user.encode(), hashed or b"", password)), hashlib.sha256).digest()
        bucket = _client_key(client)
        with self._lock:
            if hashed is not None and hmac.compare_digest(self._verified.get(user, b""), digest):
                return Verdict.ALLOWED
            if digest in self._failed:
                self._failed.move_to_end(digest)
                return Verdict.DENIED
            if not self._take(bucket):
                return Verdict.THROTTLED
        with self._bcrypt:
            # bcrypt uses the first 72 bytes of a password (htpasswd hashed no more); bcrypt 5 refuses longer.
            ok = bcrypt.checkpw(password[:72], hashed or _DUMMY_HASH) and hashed is not None
        with self._lock:
            if ok:
                self._verified[user] = digest
                self._give_back(bucket)
                return Verdict.ALLOWED
            self._failed[digest] = None
            if len(self._failed) > self.FAILED_CACHE:
                self._failed.popitem(last=False)
            return Verdict.DENIED

    def retry_after(self, client: str) -> int:
        """Whole seconds until the client's bucket holds a token again."""
        with self._lock:
            tokens = self._tokens(_client_key(client))
        return max(1, math.ceil((1 - tokens) / self.REFILL_PER_SECOND))

    def _tokens(self, bucket: str) -> float:
        tokens, at = self._buckets.get(bucket, (float(self.BURST), self._clock()))
        return min(float(self.BURST), tokens + (self._clock() - at) * self.REFILL_PER_SECOND)

    def _take(self, bucket: str) -> bool:
        tokens = self._tokens(bucket)
        if tokens < 1:
            return False
        self._buckets[bucket] = (tokens - 1, self._clock())
        self._buckets.move_to_end(bucket)
        if len(self._buckets) > self.MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return True

    def _give_back(self, bucket: str) -> None:
        if bucket in self._buckets:
            self._buckets[bucket] = (min(float(self.BURST), self._tokens(bucket) + 1), self._clock())


def _client_key(client: str) -> str:
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    source: str = ""
    guard: AuthGuard = field(default_factory=AuthGuard, compare=False, repr=False)

    def check(self, authorization: str | None, client: str) -> Verdict:
        """ALLOWED when no users are configured or the Basic credentials match a user's bcrypt hash; DENIED
        otherwise; THROTTLED when the client address failed too often to be spent bcrypt on (AuthGuard)."""
        if not self.users:
            return Verdict.ALLOWED
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return Verdict.DENIED
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return Verdict.DENIED
        return self.guard.check(user, password.encode(), self.users.get(user), client)

    def authorized(self, authorization: str | None, client: str = "") -> bool:
        return self.check(authorization, client) is Verdict.ALLOWED


_DUMMY_HASH = bcrypt.hashpw(b"threenines", bcrypt.gensalt(rounds=10))
# $2a$/$2b$/$2y$, a cost of 04..31, 22 characters of salt and 31 of hash (what htpasswd -B writes).
BCRYPT_HASH_RE = re.compile(r"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def load_web_config(path: str | Path) -> WebConfig:
    root = load(path)
    top = root.mapping(("tls_server_config", "basic_auth_users", "http_server_config"))
    if "http_server_config" in top:
        top["http_server_config"].mapping(())  # accepted when empty; its options are not supported
    tls = top.value("tls_server_config", lambda n: _tls(n, Path(path).parent), None)
    users: dict[str, bytes] = {}
    if "basic_auth_users" in top and not top["basic_auth_users"].is_null:
        for user, node in top["basic_auth_users"].mapping_items():
            hashed = node.raw.strip()
            if not BCRYPT_HASH_RE.fullmatch(hashed):
                what = "is not a whole bcrypt hash" if hashed.startswith(("$2a$", "$2b$", "$2y$")) \
                    else "must be a bcrypt hash"
                node.fail(f"{what} (e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`), never a password")
            users[user] = hashed.encode()
    return WebConfig(tls=tls, users=users, source=str(path))


def _tls(node: Node, base: Path) -> ssl.SSLContext:
    f = node.mapping(("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"),
                     required=("cert_file", "key_file"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = f.value("min_version", lambda n: TLS_VERSIONS[n.choice(TLS_VERSIONS)],
                                      ssl.TLSVersion.TLSv1_2)
    cert, key = (base / f["cert_file"].string(), base / f["key_file"].string())
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        f["cert_file"].fail(f"cannot load certificate {cert} / key {key}: {err}")
    mode = f.value("client_auth_type", lambda n: n.choice(CLIENT_AUTH), "NoClientCert")
    context.verify_mode = CLIENT_AUTH[mode]
    if "client_ca_file" in f:
        try:
            context.load_verify_locations(base / f["client_ca_file"].string())
        except (OSError, ssl.SSLError) as err:
            f["client_ca_file"].fail(f"cannot load client CA: {err}")
    elif mode in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        node.fail(f"client_auth_type {mode} needs client_ca_file")
    return context


__all__ = ["AuthGuard", "ConfigError", "Verdict", "WebConfig", "load_web_config"]
