"""The far ends of the channels, real and on 127.0.0.1 only: an SMTP relay (aiosmtpd, with or without STARTTLS
and a test CA made here), and HTTP sinks for the customer webhook, the SMS gateway and PagerDuty's Events API."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port, serving


@dataclass(frozen=True)
class TestCA:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(directory: Path) -> TestCA:
    """A CA and a certificate for 127.0.0.1 signed by it (valid one day)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "threenines test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = TestCA(directory / "ca.pem", directory / "relay.pem", directory / "relay.key")
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return out


@dataclass
class Relay:
    port: int
    messages: list[tuple[str, list[str], EmailMessage, bool]] = field(default_factory=list)  # from, to, msg, tls
    reject_rcpt: str | None = None  # answer RCPT TO with this reply instead of 250
    controller: Controller | None = None

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop_for_swap(self) -> None:
        """Stop now, so another relay can take the port (the context manager's exit then does nothing)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.relay.reject_rcpt:
            return self.relay.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        tls = session.ssl is not None
        self.relay.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed, tls))
        return f"250 2.0.0 Ok: queued as QID{len(self.relay.messages):04d}"


@contextmanager
def smtp_relay(ca: TestCA | None = None, port: int | None = None) -> Iterator[Relay]:
    """A real SMTP server on 127.0.0.1; with `ca` it offers STARTTLS with a certificate from that CA."""
    relay = Relay(port or free_port())
    context = None
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca.cert_file, ca.key_file)
    controller = Controller(_Handler(relay), hostname="127.0.0.1", port=relay.port, tls_context=context,
                            require_starttls=False, ready_timeout=10,
                            server_hostname="127.0.0.1", decode_data=False)
    controller.start()
    relay.controller = controller
    try:
        yield relay
    finally:
        relay.stop_for_swap()


@dataclass
class Sink:
    url: str
    received: list[tuple[dict[str, str], dict]] = field(default_factory=list)  # headers, JSON body


@contextmanager
def http_sink(answer: Callable[[int, dict], tuple[int, bytes]] | None = None, path: str = "/hook"
              ) -> Iterator[Sink]:
    """An HTTP server on 127.0.0.1 recording each POST's headers and JSON body; `answer(n, body)` decides the
    reply to the n-th post (0-based), 200 `{"id": "r-<n>"}` by default."""
    lock = threading.Lock()
    sink = Sink("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            with lock:
                n = len(sink.received)
                sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, reply = answer(n, body) if answer else (200, json.dumps({"id": f"r-{n}"}).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as server:
        sink.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        yield sink


def pagerduty_answer(n: int, body: dict) -> tuple[int, bytes]:
    """PagerDuty's Events API v2: 202 and the event's dedup_key."""
    return 202, json.dumps({"status": "success", "message": "Event processed",
                            "dedup_key": body.get("dedup_key")}).encode()
