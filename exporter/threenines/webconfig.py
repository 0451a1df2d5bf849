"""The Prometheus exporter-toolkit web config file (`--web.config.file`): TLS and basic auth for the exporter.

Operators reuse the file they already have for node_exporter & co. Supported keys: `tls_server_config`
(cert_file, key_file, client_auth_type, client_ca_file, min_version) and `basic_auth_users` (bcrypt hashes).
Anything else in the file is an error, so a typo cannot silently leave the exporter open.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from threenines.configfile import ConfigError, Node, load

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    source: str = ""

    def authorized(self, authorization: str | None) -> bool:
        """True when no users are configured, or the Basic credentials match a user's bcrypt hash."""
        if not self.users:
            return True
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(password.encode(), _DUMMY_HASH)  # same cost for unknown users: no user probing
            return False
        return hmac.compare_digest(bcrypt.hashpw(password.encode(), hashed), hashed)


_DUMMY_HASH = bcrypt.hashpw(b"threenines", bcrypt.gensalt(rounds=10))


def load_web_config(path: str | Path) -> WebConfig:
    root = load(path)
    top = root.mapping(("tls_server_config", "basic_auth_users", "http_server_config"))
    if "http_server_config" in top:
        top["http_server_config"].mapping(())  # accepted when empty; its options are not supported
    tls = _tls(top["tls_server_config"], Path(path).parent) if "tls_server_config" in top else None
    users: dict[str, bytes] = {}
    if "basic_auth_users" in top and not top["basic_auth_users"].is_null:
        for user, node in top["basic_auth_users"].mapping_items():
            hashed = node.raw.encode()
            if not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
                node.fail("must be a bcrypt hash (e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`), never a password")
            users[user] = hashed
    return WebConfig(tls=tls, users=users, source=str(path))


def _tls(node: Node, base: Path) -> ssl.SSLContext:
    f = node.mapping(("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"),
                     required=("cert_file", "key_file"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[f["min_version"].choice(TLS_VERSIONS)] if "min_version" in f \
        else ssl.TLSVersion.TLSv1_2
    cert, key = (base / f["cert_file"].string(), base / f["key_file"].string())
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        f["cert_file"].fail(f"cannot load certificate {cert} / key {key}: {err}")
    mode = f["client_auth_type"].choice(CLIENT_AUTH) if "client_auth_type" in f else "NoClientCert"
    context.verify_mode = CLIENT_AUTH[mode]
    if "client_ca_file" in f:
        try:
            context.load_verify_locations(base / f["client_ca_file"].string())
        except (OSError, ssl.SSLError) as err:
            f["client_ca_file"].fail(f"cannot load client CA: {err}")
    elif mode in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        node.fail(f"client_auth_type {mode} needs client_ca_file")
    return context


__all__ = ["ConfigError", "WebConfig", "load_web_config"]
