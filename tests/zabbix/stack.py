"""A real Zabbix 6.0 (Debian packages) on 127.0.0.1: PostgreSQL cluster, zabbix_server and the PHP frontend.

Everything lives in one temporary directory and listens on free ports; processes are stopped by PID in
reverse order (frontend, server, then database: a server left without its database retries for minutes).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import RunningProcess, free_port, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
FRONTEND = Path("/usr/share/zabbix")
ZABBIX_SERVER = Path("/usr/sbin/zabbix_server")
CONFIG_CLASS = FRONTEND / "include/classes/core/CConfigFile.php"
DEBIAN_CONFIG_PATH = "'/etc/zabbix/zabbix.conf.php'"

# The Debian frontend hard-codes /etc/zabbix/zabbix.conf.php as a class constant. Rather than write into
# /etc on the test machine, this file (PHP's auto_prepend_file) defines that class from the packaged source
# with our path, before the frontend's autoloader would load the original.
PREPEND_PHP = """<?php
if (!class_exists('CConfigFile', false)) {
    $source = file_get_contents(%(class_file)s);
    eval('?>' . str_replace(%(debian_path)s, %(our_path)s, $source));
}
"""

FRONTEND_CONF = """<?php
$DB['TYPE'] = 'POSTGRESQL';
$DB['SERVER'] = '127.0.0.1';
$DB['PORT'] = '%(db_port)d';
$DB['DATABASE'] = 'zabbix';
$DB['USER'] = 'zabbix';
$DB['PASSWORD'] = '';
$DB['SCHEMA'] = '';
$DB['ENCRYPTION'] = false;
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '127.0.0.1';
$ZBX_SERVER_PORT = '%(server_port)d';
$ZBX_SERVER_NAME = 'threenines-test';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
"""

SERVER_CONF = """ListenIP=127.0.0.1
ListenPort=%(server_port)d
LogFile=%(dir)s/zabbix_server.log
LogFileSize=0
PidFile=%(dir)s/zabbix_server.pid
SocketDir=%(dir)s
TmpDir=%(dir)s
DBHost=127.0.0.1
DBPort=%(db_port)d
DBName=zabbix
DBUser=zabbix
Timeout=4
FpingLocation=/usr/bin/fping
Fping6Location=/usr/bin/fping6
AlertScriptsPath=%(dir)s
ExternalScripts=%(dir)s
# Pick up imported templates and created hosts within seconds rather than the default minute.
CacheUpdateFrequency=2
# Services created through the API reach the service manager this often (default once a minute).
ServiceManagerSyncFrequency=2
StartPollers=2
StartPollersUnreachable=1
StartTrappers=1
StartPingers=1
StartDiscoverers=0
StartHTTPPollers=2
StartPreprocessors=2
StartLLDProcessors=1
StartDBSyncers=1
StartEscalators=1
StartAlerters=1
StartTimers=1
HousekeepingFrequency=0
LogSlowQueries=3000
"""


@dataclass(frozen=True)
class ZabbixStack:
    api_url: str
    server_port: int
    db_port: int
    workdir: Path
    server_log: Path

    def psql(self, sql: str) -> str:
        return _psql(self.db_port, sql)


def _zabbix_port() -> int:
    """A free TCP port on 127.0.0.1 that zabbix_server accepts (its ListenPort must be 1024-32767)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 32767)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767 on 127.0.0.1 after 200 tries")


def _service_user_argv(user: str) -> list[str]:
    """Run as the package's service user when we are root (postgres refuses root); as ourselves otherwise."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _psql(db_port: int, sql: str, database: str = "zabbix", user: str = "zabbix") -> str:
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(db_port), "-U", user,
         "-d", database, "-At"],
        input=sql.encode(), capture_output=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout.decode()


def _load_schema(db_port: int) -> None:
    _psql(db_port, "CREATE ROLE zabbix LOGIN; CREATE DATABASE zabbix OWNER zabbix ENCODING 'UTF8' "
          "TEMPLATE template0;", database="postgres", user="postgres")
    for name in ("schema", "images", "data"):
        with gzip.open(SCHEMA_DIR / f"{name}.sql.gz", "rt", encoding="utf-8") as sql:
            # One transaction per file: an order of magnitude faster than autocommit per statement.
            _psql(db_port, "BEGIN;\n" + sql.read() + "\nCOMMIT;\n")


@contextlib.contextmanager
def zabbix_stack(workdir: Path, php_workers: int = 4) -> Iterator[ZabbixStack]:
    workdir.mkdir(parents=True, exist_ok=True)
    pgdata = workdir / "pgdata"
    pgdata.mkdir()
    _chown(pgdata, "postgres")
    zbxdir = workdir / "zabbix"
    zbxdir.mkdir()
    _chown(zbxdir, "zabbix")
    db_port, server_port, web_port = free_port(), _zabbix_port(), free_port()

    subprocess.run([*_service_user_argv("postgres"), str(PG_BIN / "initdb"), "-D", str(pgdata), "-A", "trust",
                    "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, timeout=120)
    stack: list[RunningProcess] = []
    try:
        postgres = RunningProcess(
            [*_service_user_argv("postgres"), str(PG_BIN / "postgres"), "-D", str(pgdata), "-p", str(db_port),
             "-h", "127.0.0.1", "-k", str(pgdata), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100"],
            workdir / "postgres.log",
        )
        stack.append(postgres)
        wait_until(lambda: _pg_ready(db_port), 60, 0.2, "PostgreSQL to accept connections")
        _load_schema(db_port)

        (zbxdir / "zabbix_server.conf").write_text(SERVER_CONF % {"server_port": server_port, "db_port": db_port,
                                                                 "dir": zbxdir})
        server_log = zbxdir / "zabbix_server.log"
        server = RunningProcess(
            [*_service_user_argv("zabbix"), str(ZABBIX_SERVER), "-f", "-c", str(zbxdir / "zabbix_server.conf")],
            workdir / "zabbix_server.out",
        )
        stack.append(server)
        wait_until(lambda: not server.alive() or _server_started(server_log), 60, 0.2, "zabbix_server to start")
        if not server.alive():
            raise AssertionError(f"zabbix_server exited: {server.log()[-2000:]}")

        conf = workdir / "zabbix.conf.php"
        conf.write_text(FRONTEND_CONF % {"db_port": db_port, "server_port": server_port})
        prepend = workdir / "prepend.php"
        prepend.write_text(PREPEND_PHP % {"class_file": _php_str(str(CONFIG_CLASS)),
                                          "debian_path": _php_str(DEBIAN_CONFIG_PATH), "our_path": _php_str(
                                              _php_str(str(conf)))})
        php = RunningProcess(
            ["php", "-S", f"127.0.0.1:{web_port}", "-t", str(FRONTEND), "-d", f"auto_prepend_file={prepend}",
             "-d", "memory_limit=512M", "-d", "post_max_size=16M", "-d", "upload_max_filesize=2M",
             "-d", "max_execution_time=300", "-d", "date.timezone=UTC"],
            workdir / "php.log", env={"PHP_CLI_SERVER_WORKERS": str(php_workers)},
        )
        stack.append(php)
        api_url = f"http://127.0.0.1:{web_port}/api_jsonrpc.php"
        wait_until(lambda: _api_ready(api_url), 60, 0.2, "the Zabbix API to answer")
        yield ZabbixStack(api_url=api_url, server_port=server_port, db_port=db_port, workdir=workdir,
                          server_log=server_log)
    finally:
        # Frontend, then server, then database: in that order nothing is left retrying a vanished peer.
        errors = []
        for process in reversed(stack):
            try:
                _stop_with_children(process)
            except Exception as err:  # keep stopping the rest; report after
                errors.append(err)
        if errors:
            raise errors[0]


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _stop_with_children(process: RunningProcess) -> None:
    """Stop a process by PID, then its direct children by PID: PHP's server workers outlive their parent."""
    children = _children(process.pid)
    process.stop(timeout=30)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
    for child in children:
        with contextlib.suppress(AssertionError):
            wait_until(lambda c=child: not Path(f"/proc/{c}").exists() or _zombie(c), 10, 0.05, f"pid {child} to exit")
        if Path(f"/proc/{child}").exists() and not _zombie(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _server_started(log: Path) -> bool:
    return log.exists() and "server #0 started" in log.read_text(errors="replace")


def _php_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pg_ready(db_port: int) -> bool:
    return subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(db_port)],
                          capture_output=True, timeout=10, check=False).returncode == 0


def _api_ready(api_url: str) -> bool:
    import requests

    reply = requests.post(api_url, json={"jsonrpc": "2.0", "method": "apiinfo.version", "params": {}, "id": 1},
                          timeout=10)
    return reply.status_code == 200 and reply.json().get("result", "").startswith("6.0")


def tools_available() -> list[str]:
    """What of the Debian packages is missing; a fresh machine gets them from `make system-deps`."""
    needed = [PG_BIN / "initdb", ZABBIX_SERVER, FRONTEND / "api_jsonrpc.php", SCHEMA_DIR / "schema.sql.gz"]
    missing = [str(p) for p in needed if not p.exists()]
    missing += [tool for tool in ("php", "psql", "setpriv", "fping") if shutil.which(tool) is None]
    return missing


if __name__ == "__main__":  # manual smoke run: python -m tests.zabbix.stack
    import tempfile

    with tempfile.TemporaryDirectory(prefix="zbx-") as tmp:
        os.chmod(tmp, 0o755)
        started = time.monotonic()
        with zabbix_stack(Path(tmp)) as zbx:
            print("up in", round(time.monotonic() - started, 1), "s", zbx.api_url)
        print("down after", round(time.monotonic() - started, 1), "s")
