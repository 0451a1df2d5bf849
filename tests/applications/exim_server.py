"""Debian's exim4 (exim4-daemon-light) as the customer's mail server, started by a test as its own process.

`exim4 -C <file> -bdf -oX <port>:<port> -oP <pidfile>` with a configuration file written here, listening on
127.0.0.1 and ::1 on free ports, spool and logs in the test's directory; no system service, nothing in /etc.
What Debian's exim4 (4.96) accepts and refuses, found by running it:

- The -C file must be owned by root (Debian builds with CONFIGURE_OWNER 0) and writable by no one but its
  owner and group root, or exim stops with "Exim configuration file … has the wrong owner, group, or mode";
  the file is written here (by root) and chmod 0644 so that a umask cannot break it.
- Called by root, exim keeps root for a -C file outside TRUSTED_CONFIG_LIST (/etc/exim4/trusted_configs, absent
  on Debian); called by any other user it drops privilege for such a file and `-bd` answers "exim: permission
  denied". So these tests, like the dovecot and vsftpd ones, need root.
- Exim creates its log files (and works in its spool) as `exim_user`, Debian's `Debian-exim`, which can neither
  enter nor write pytest's 0700 temporary directories ("Cannot open main log file …: Permission denied: euid=0"). The
  configuration sets `exim_user = root` and `exim_group = root`: exim has no problem with that for reception
  (root is only in never_users, for deliveries, and this exim delivers nothing: every RCPT is denied).
- `-bdf` keeps the daemon in the foreground, so the process started is the listening daemon (the pid file
  written by -oP names it) and is stopped by its PID with SIGTERM; each connection is served by a child that
  exits with its connection.
- `-oX` with digits and colons only replaces daemon_smtp_ports; local_interfaces (127.0.0.1 and ::1) stays.
- Exim 4.96 advertises STARTTLS to every client by default (tls_advertise_hosts = *) with a self-signed
  certificate when none is configured; a server "without STARTTLS" needs `tls_advertise_hosts =` (empty).
- `log_selector = +smtp_connection` logs every connection, so a test can see that a check reached exim.
- `keep_environment =` silences the "purging the environment" warning; `rfc1413_hosts =` and `host_lookup =`
  keep exim from calling back (ident) or resolving the client's address.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.applications.servers import _wait_listening, wait_refused
from tests.support import RunningProcess, free_port, running, wait_until

EXIM = shutil.which("exim4") or "/usr/sbin/exim4"  # Debian: exim4-daemon-light
MAIL_NAME = "mail.customer.test"


@dataclass(frozen=True)
class Exim:
    smtp: int  # plain SMTP on 127.0.0.1 and ::1; STARTTLS offered when exim has a certificate
    smtps: int | None  # TLS from the first byte (tls_on_connect_ports), with a certificate only
    process: RunningProcess
    directory: Path


def exim_config(directory: Path, smtps: int | None, pair: tuple[Path, Path] | None) -> Path:
    if pair is None:
        tls = "tls_advertise_hosts =\n"  # STARTTLS not offered (exim's default is to offer it to everyone)
    else:
        tls = (f"tls_certificate = {pair[0]}\ntls_privatekey = {pair[1]}\ntls_advertise_hosts = *\n"
               + (f"tls_on_connect_ports = {smtps}\n" if smtps is not None else ""))
    conf = f"""# written by the threenines tests: a mail server that accepts connections and no mail
exim_user = root
exim_group = root
primary_hostname = {MAIL_NAME}
spool_directory = {directory}/spool
log_file_path = {directory}/log/%slog
log_selector = +smtp_connection
local_interfaces = <; 127.0.0.1 ; ::1
keep_environment =
rfc1413_hosts =
host_lookup =
acl_smtp_rcpt = deny
{tls}
begin routers
begin transports
"""
    path = directory / "exim.conf"
    path.write_text(conf)
    path.chmod(0o644)
    return path


@contextlib.contextmanager
def exim(directory: Path, pair: tuple[Path, Path] | None = None, smtp: int | None = None,
         smtps: int | None = None) -> Iterator[Exim]:
    """Exim listening on 127.0.0.1 and ::1: `smtp` (STARTTLS offered with the certificate `pair`, not offered
    without one) and, with `pair`, `smtps` (implicit TLS). Ports are free ones unless given (a restart)."""
    smtp = smtp or free_port()
    smtps = (smtps or free_port()) if pair is not None else None  # implicit TLS needs a certificate
    for sub in ("spool", "log"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    config = exim_config(directory, smtps, pair)
    ports = ":".join(str(p) for p in (smtp, smtps) if p is not None)
    pidfile = directory / "exim.pid"
    pidfile.unlink(missing_ok=True)
    argv = [EXIM, "-C", str(config), "-bdf", "-oX", ports, "-oP", str(pidfile)]
    logs = [directory / "log" / "mainlog", directory / "log" / "paniclog"]
    with running(argv, directory / "exim.out") as process:
        for port in (smtp, smtps):
            if port is not None:
                _wait_listening(process, port, "exim", logs)
        # The daemon writes its pid file once listening: it must be the process started (stopped by PID).
        wait_until(pidfile.exists, 10, 0.05, "exim's pid file")
        assert int(pidfile.read_text().split()[0]) == process.pid, pidfile.read_text()
        yield Exim(smtp, smtps, process, directory)
    wait_refused((smtp, smtps), "exim", ("127.0.0.1", "::1"))
