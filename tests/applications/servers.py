"""Real servers for the application checks, on 127.0.0.1 / ::1 and free ports: Debian's nginx (HTTP and HTTPS
with a CA this module creates, an expired certificate, a wrong host name), aiosmtpd (SMTP, with and without
STARTTLS, and over implicit TLS), Debian's dovecot (IMAP and POP3, STARTTLS and implicit TLS) and vsftpd (FTP,
explicit FTPS, an anonymous login checked against a password list), a socket that accepts and never answers, and
a banner server. Every process is stopped by PID.

dovecot and vsftpd run as their own processes from a config file written here (no system service, nothing in
/etc). What they still take from the system, all set up by their Debian packages: dovecot's `dovenull` and
`dovecot` users (its login and internal processes drop to them), and vsftpd's `ftp` user (an anonymous session
runs as it). The FTP login needs no system account: vsftpd's anonymous login with `secure_email_list_enable`
accepts only the passwords listed in a file, so a wrong password is a real 530."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import RunningProcess, free_port, running, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"  # Debian: dovecot-core (with dovecot-imapd, -pop3d)
VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"  # Debian: vsftpd
SERVER_NAME = "www.customer.test"  # never resolved: the checks connect to 127.0.0.1 and send it as SNI


@dataclass(frozen=True)
class Pki:
    ca: Path
    good: tuple[Path, Path]  # (cert, key) for SERVER_NAME and 127.0.0.1, valid now
    expired: tuple[Path, Path]  # for SERVER_NAME, expired yesterday
    wrong_name: tuple[Path, Path]  # valid now, for other.test only
    good_not_after: float


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(directory: Path) -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("threenines test CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=30)).not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, names: list[str], start: datetime.datetime, end: datetime.datetime) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")) if stem != "wrong" else x509.DNSName("x.test"))
        cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    good_end = (now + datetime.timedelta(days=20)).replace(microsecond=0)
    return Pki(
        ca=ca_path,
        good=leaf("good", [SERVER_NAME], now - datetime.timedelta(days=1), good_end),
        expired=leaf("expired", [SERVER_NAME], now - datetime.timedelta(days=60), now - datetime.timedelta(days=1)),
        wrong_name=leaf("wrong", ["other.test"], now - datetime.timedelta(days=1), good_end),
        good_not_after=good_end.timestamp(),
    )


@dataclass(frozen=True)
class Nginx:
    http: int  # 127.0.0.1 and [::1]: /ok 200 "hello threenines", /fail 500, /moved 301
    https: int  # good certificate
    expired: int
    wrong_name: int



def nginx_conf(directory: Path, servers: str) -> str:
    """Debian's nginx as a test process: pid, logs and temp paths in `directory`, the given server blocks."""
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{servers}
}}
"""

@contextlib.contextmanager
def nginx(directory: Path, pki: Pki) -> Iterator[Nginx]:
    ports = Nginx(free_port(), free_port(), free_port(), free_port())
    directory.mkdir(parents=True, exist_ok=True)
    locations = """
        location = /ok { default_type text/plain; return 200 "hello threenines\\n"; }
        location = /fail { return 500; }
        location = /moved { return 301 /ok; }
        location / { return 404; }"""

    def tls_server(port: int, pair: tuple[Path, Path]) -> str:
        return (f"server {{ listen 127.0.0.1:{port} ssl; server_name {SERVER_NAME}; "
                f"ssl_certificate {pair[0]}; ssl_certificate_key {pair[1]}; {locations} }}")

    conf = nginx_conf(directory, f"""
    server {{ listen 127.0.0.1:{ports.http}; listen [::1]:{ports.http}; {locations} }}
    {tls_server(ports.https, pki.good)}
    {tls_server(ports.expired, pki.expired)}
    {tls_server(ports.wrong_name, pki.wrong_name)}""")
    (directory / "nginx.conf").write_text(conf)
    argv = [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
    with running(argv, directory / "nginx.out") as process:
        def listening() -> bool:
            if not process.alive():
                raise AssertionError(f"nginx exited:\n{process.log()}\n{(directory / 'error.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", ports.wrong_name), 1):
                return True
            return False

        wait_until(listening, 20, 0.1, "nginx to listen")
        yield ports


@contextlib.contextmanager
def silent_listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A socket that accepts (the kernel completes the handshake) and never answers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def banner_server(banner: bytes) -> Iterator[int]:
    """Answers every connection with `banner` and closes it (a thread, at most 50 connections, 30 s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        for _ in range(150):  # 150 × 0.2 s accept timeouts at most
            if done.is_set():
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.sendall(banner)
                conn.settimeout(1)
                conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        sock.close()


@contextlib.contextmanager
def smtp_server(pki: Pki | None = None, pair: tuple[Path, Path] | None = None, implicit: bool = False
                ) -> Iterator[int]:
    """aiosmtpd on 127.0.0.1; with a certificate it offers STARTTLS, or (implicit) speaks TLS from the start."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    context = None
    if pair is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*pair)
    port = free_port()
    tls = {"ssl_context" if implicit else "tls_context": context}
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, ready_timeout=10, **tls)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _wait_listening(process: RunningProcess, port: int, what: str, logs: list[Path]) -> None:
    def listening() -> bool:
        if not process.alive():
            raise AssertionError(f"{what} exited:\n{process.log()}\n"
                                 + "\n".join(p.read_text(errors="replace") for p in logs if p.exists()))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    wait_until(listening, 20, 0.1, f"{what} to listen on {port}")


def wait_refused(ports: Iterable[int | None], what: str, hosts: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """After its master is stopped: until every port refuses connections. A child serving the last connection
    (exim's, dovecot's login processes) can hold the listening socket for a moment on a loaded machine; the
    server is stopped once they are gone too."""
    def refused() -> bool:
        for host in hosts:
            for port in ports:
                if port is None:
                    continue
                try:
                    with socket.create_connection((host, port), 1):
                        return False
                except ConnectionRefusedError:
                    continue
                except OSError:
                    return False
        return True

    wait_until(refused, 10, 0.05, f"{what}'s ports to refuse connections once it stopped")


@dataclass(frozen=True)
class Dovecot:
    imap: int  # STARTTLS offered
    imaps: int  # implicit TLS
    pop3: int  # STLS offered
    pop3s: int


@contextlib.contextmanager
def dovecot(directory: Path, pair: tuple[Path, Path]) -> Iterator[Dovecot]:
    """Debian's dovecot on 127.0.0.1 (IMAP, IMAPS, POP3, POP3S) with the certificate `pair`; no mail is read."""
    ports = Dovecot(free_port(), free_port(), free_port(), free_port())
    directory.mkdir(parents=True, exist_ok=True)
    # Its UNIX sockets live in base_dir, whose paths must fit sun_path (108 bytes): not under pytest's tmp_path,
    # which is deeper under xdist (popen-gwN/).
    run_dir = tempfile.mkdtemp(prefix="tn-dovecot-")
    conf = f"""
protocols = imap pop3
listen = 127.0.0.1
base_dir = {run_dir}
state_dir = {directory}/state
instance_name = threenines-test-{ports.imap}
log_path = {directory}/dovecot.log
ssl = yes
ssl_cert = <{pair[0]}
ssl_key = <{pair[1]}
# The checks never log in; dovecot refuses to start without a passdb and userdb.
passdb {{
  driver = static
  args = password=unused-{os.urandom(8).hex()}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={directory}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {ports.imap}
  }}
  inet_listener imaps {{
    port = {ports.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports.pop3}
  }}
  inet_listener pop3s {{
    port = {ports.pop3s}
    ssl = yes
  }}
}}
"""
    (directory / "dovecot.conf").write_text(conf)
    # -F: the master stays in the foreground, so it is the PID stopped; its children exit with it.
    argv = [DOVECOT, "-F", "-c", str(directory / "dovecot.conf")]
    try:
        with running(argv, directory / "dovecot.out") as process:
            for port in (ports.imap, ports.imaps, ports.pop3, ports.pop3s):
                _wait_listening(process, port, "dovecot", [directory / "dovecot.log"])
            yield ports
        wait_refused((ports.imap, ports.imaps, ports.pop3, ports.pop3s), "dovecot")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass(frozen=True)
class Vsftpd:
    port: int
    password: str  # the one anonymous password the server accepts
    process: RunningProcess


@contextlib.contextmanager
def vsftpd(directory: Path, pair: tuple[Path, Path] | None = None) -> Iterator[Vsftpd]:
    """Debian's vsftpd on 127.0.0.1, anonymous only, accepting one password; with `pair`, explicit FTPS."""
    port = free_port()
    password = f"pw-{os.urandom(6).hex()}"
    directory.mkdir(parents=True, exist_ok=True)
    root, empty = directory / "root", directory / "empty"
    for path in (root, empty):
        path.mkdir(exist_ok=True)
        path.chmod(0o555)  # vsftpd refuses a chroot its user could write to
    (directory / "passwords").write_text(password + "\n")
    tls = (f"ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=NO\nforce_anon_data_ssl=NO\n"
           f"rsa_cert_file={pair[0]}\nrsa_private_key_file={pair[1]}\nssl_ciphers=HIGH\n") if pair else ""
    # isolate/seccomp off: vsftpd's namespaces and seccomp filter are refused in a test sandbox.
    conf = f"""listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root={root}
secure_chroot_dir={empty}
secure_email_list_enable=YES
email_password_file={directory / "passwords"}
ftpd_banner=threenines test FTP
xferlog_enable=NO
vsftpd_log_file={directory / "vsftpd.log"}
{tls}"""
    (directory / "vsftpd.conf").write_text(conf)
    with running([VSFTPD, str(directory / "vsftpd.conf")], directory / "vsftpd.out") as process:
        _wait_listening(process, port, "vsftpd", [directory / "vsftpd.log"])
        yield Vsftpd(port, password, process)
