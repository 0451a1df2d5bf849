"""The Debian package, used the way README's "Install" section uses it: `make deb`, `apt-get install
./threenines_*.deb`, the units checked by systemd-analyze, the inventory edited, the exporter started and reloaded
the way its unit starts and reloads it, the maintenance-sync unit run against a real Alertmanager, then a purge.

No systemd runs as PID 1 here (nor in CI), so `systemctl` has nothing to talk to. What systemd would do is done by
hand from the installed unit files: their ExecStart/ExecReload lines, expanded with the unit's Environment= and
EnvironmentFile=, run as the unit's User= with its AmbientCapabilities= and CapabilityBoundingSet= (setpriv). The
sandboxing only systemd applies (ProtectSystem=, the system-call filter...) is checked statically by
`systemd-analyze verify` and `systemd-analyze security --offline`, which need no running systemd.

Needs root (it installs a package) and what `make system-deps` installs; a missing tool fails the test by name.
The network is loopback only: ICMP to 127.0.10.x, HTTP to 127.0.0.1; the package's Depends are installed
beforehand (APT_PACKAGES), and the install fails here rather than fetch anything.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import REPO, free_port, http_get, running, wait_until

pytestmark = pytest.mark.system  # apt-get install: /etc/threenines, /var/lib/threenines

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
UNITS = Path("/lib/systemd/system")
SERVICE = UNITS / "threenines.service"
SYNC_SERVICE = UNITS / "threenines-maintenance-sync.service"
SYNC_TIMER = UNITS / "threenines-maintenance-sync.timer"
INVENTORY = Path("/etc/threenines/inventory.yml")
DEFAULTS = Path("/etc/default/threenines")
STATE = Path("/var/lib/threenines")
EXCLUSIONS = Path("/etc/threenines/exclusions.yml")
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
# What a purge must take away, and what the test moves aside first if an earlier run or a hand-run exporter left it.
OWNED_PATHS = (INVENTORY.parent, DEFAULTS, STATE)
TOOLS = ("make", "git", "apt-get", "dpkg-buildpackage", "dpkg-checkbuilddeps", "systemd-analyze", "setpriv",
         "runuser", "promtool", "amtool", ALERTMANAGER)
CAP_NET_RAW = 1 << 13


def run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def system_env(**extra: str) -> dict[str, str]:
    """Debian's tools, not the venv's or pyenv's python3 first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, "PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive", **extra}


def apt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(["apt-get", "-o", "DPkg::Lock::Timeout=120", *args], timeout=300, cwd=cwd, env=system_env())


def package_status() -> str:
    result = run(["dpkg-query", "-W", "-f=${db:Status-Status}", "threenines"])
    return result.stdout.strip() if result.returncode == 0 else "not-installed"


def require_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("tests/packaging installs and purges a package: run as root (CI does)")
    missing = [tool for tool in TOOLS if shutil.which(tool, path=f"{SYSTEM_PATH}:{os.environ.get('PATH', '')}")
               is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make system-deps` installs them (Makefile APT_PACKAGES)")
    unmet = run(["dpkg-checkbuilddeps"], cwd=REPO, env=system_env())
    if unmet.returncode != 0:
        pytest.fail(f"debian/control's build dependencies are not installed ({unmet.stderr.strip()}): "
                    "`make system-deps` installs them (Makefile APT_PACKAGES)")


# --- the installed unit files, read as systemd reads them (the subset these units use) -------------------------

@dataclass(frozen=True)
class Unit:
    path: Path
    entries: tuple[tuple[str, str, str], ...]  # (section, key, value), in file order

    @classmethod
    def read(cls, path: Path) -> Unit:
        entries, section = [], ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
        return cls(path, tuple(entries))

    def all(self, section: str, key: str) -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def one(self, section: str, key: str) -> str:
        values = self.all(section, key)
        assert len(values) == 1, f"{self.path}: [{section}] {key}= set {len(values)} times"
        return values[0]

    def environment(self, **extra: str) -> dict[str, str]:
        """The environment systemd gives the service: basics for User=, Environment=, then EnvironmentFile=."""
        user = pwd.getpwnam(self.one("Service", "User"))
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": user.pw_dir, "USER": user.pw_name,
               "LOGNAME": user.pw_name, "SHELL": user.pw_shell}
        for assignments in self.all("Service", "Environment"):
            env.update(word.split("=", 1) for word in shlex.split(assignments))  # type: ignore[misc]
        for name in self.all("Service", "EnvironmentFile"):
            path = Path(name.removeprefix("-"))
            if not path.exists():
                assert name.startswith("-"), f"{self.path}: EnvironmentFile={name} does not exist"
                continue
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if line and line[0] not in "#;":
                    key, _, value = line.partition("=")
                    env[key.strip()] = " ".join(shlex.split(value))
        return {**env, **extra}

    def command(self, key: str, env: dict[str, str]) -> list[str]:
        """ExecStart=-style line: `$VAR` becomes its words (none when empty), `${VAR}` is substituted in place."""
        words: list[str] = []
        for word in shlex.split(self.one("Service", key)):
            whole = re.fullmatch(r"\$([A-Za-z_]\w*)", word)
            if whole:
                words += env.get(whole[1], "").split()
            else:
                words.append(re.sub(r"\$\{([A-Za-z_]\w*)\}", lambda m: env.get(m[1], ""), word))
        assert words and words[0].startswith("/"), f"{self.path}: {key}= must start with an absolute path"
        return words

    def as_systemd_runs(self, key: str, **extra_env: str) -> list[str]:
        """argv that runs the unit's `key` command with the unit's environment, user, group and capabilities."""
        env = self.environment(**extra_env)
        caps = lambda setting: [c.lower().removeprefix("cap_") for v in self.all("Service", setting)  # noqa: E731
                                for c in v.split()]
        ambient, bounding = caps("AmbientCapabilities"), caps("CapabilityBoundingSet")
        argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "setpriv",
                f"--reuid={self.one('Service', 'User')}", f"--regid={self.one('Service', 'Group')}", "--init-groups",
                "--bounding-set=" + ",".join(["-all", *(f"+{c}" for c in bounding)])]
        if ambient:
            plus = ",".join(f"+{c}" for c in ambient)
            argv += [f"--inh-caps={plus}", f"--ambient-caps={plus}"]
        if self.all("Service", "NoNewPrivileges") == ["yes"]:
            argv.append("--no-new-privs")
        return [*argv, "--", *self.command(key, env)]


# --- /metrics -------------------------------------------------------------------------------------------------------

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$", re.MULTILINE)


def metric(text: str, name: str, **labels: str) -> float | None:
    for match in SAMPLE.finditer(text):
        if match["name"] == name:
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
            if labels.items() <= have.items():
                return float(match["value"])
    return None


def inventory(port: int, targets: list[tuple[str, str]]) -> str:
    ports = "".join(f"      - {{id: {ident}, address: {address}}}\n" for ident, address in targets)
    return f"""\
exporter:
  listen: 127.0.0.1:{port}
defaults:
  ping: {{interval: 5s, threshold: 2, packets: 1, timeout: 1s}}
sites:
  - {{id: lab, name: Test lab}}
customers:
  - id: acme
    name: ACME
    site: lab
    timezone: Europe/Amsterdam
    objective: 99.9%
    contacts: {{version: "1", notify: [{{email: noc@acme.example}}]}}
    ports:
{ports}"""


# --- fixtures: build once, install once, purge at the end --------------------------------------------------------

@dataclass(frozen=True)
class Installed:
    deb: Path
    files: tuple[str, ...]  # dpkg -L right after the install


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    result = run(["make", "--no-print-directory", "deb", f"DEB_DIR={out}"], timeout=900, cwd=REPO)
    assert result.returncode == 0, f"make deb failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    print(f"make deb: {time.monotonic() - started:.1f}s")
    debs = sorted(out.glob("threenines_*.deb"))
    assert len(debs) == 1, f"make deb made {debs}"
    # built from a copy: the working tree gets no debhelper or pybuild droppings
    droppings = [p for p in ("debian/.debhelper", "debian/threenines", "debian/files", "debian/build-tree.d",
                             ".pybuild", "debian/debhelper-build-stamp") if (REPO / p).exists()]
    assert not droppings, f"the build wrote into the working tree: {droppings}"
    return debs[0]


@contextlib.contextmanager
def leftovers_moved_aside(tmp: Path) -> Iterator[None]:
    """A hand-run exporter may have made /var/lib/threenines (say): keep it out of the way, give it back after."""
    moved = []
    for path in OWNED_PATHS:
        if path.exists():
            aside = tmp / path.name
            shutil.move(path, aside)
            moved.append((aside, path))
    try:
        yield
    finally:
        for aside, path in moved:
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            shutil.move(aside, path)


@pytest.fixture(scope="module")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if package_status() != "not-installed":
        pytest.fail("threenines is already installed here; this test installs and purges its own build: "
                    "apt-get purge threenines first")
    # the README's `apt install ./threenines_*.deb`, here with every Depends already installed
    plan = apt("install", "-s", f"./{deb.name}", cwd=deb.parent)
    new = [line.split()[1] for line in plan.stdout.splitlines() if line.startswith("Inst ")]
    assert plan.returncode == 0 and new == ["threenines"], (
        f"installing {deb.name} would also install {[n for n in new if n != 'threenines']} from the network "
        f"(or fails: {plan.stderr.strip()}): `make system-deps` installs the package's Depends (APT_PACKAGES)")
    with leftovers_moved_aside(tmp_path_factory.mktemp("leftovers")):
        try:
            started = time.monotonic()
            result = apt("install", "-y", f"./{deb.name}", cwd=deb.parent)
            assert result.returncode == 0, f"apt-get install failed:\n{result.stdout[-3000:]}\n{result.stderr}"
            print(f"apt-get install: {time.monotonic() - started:.1f}s")
            files = run(["dpkg", "-L", "threenines"]).stdout.split("\n")
            yield Installed(deb, tuple(f for f in files if f and f != "/."))
        finally:  # whatever failed, the machine is left without the package
            if package_status() != "not-installed":
                apt("purge", "-y", "threenines")


# --- the tests, in the order an admin meets the package ----------------------------------------------------------

def test_the_package_is_built_for_this_architecture_from_this_version(deb: Path) -> None:
    fields = run(["dpkg-deb", "-f", str(deb), "Version", "Architecture", "Depends"]).stdout
    version = re.search(r'__version__ = "([^"]+)"', (REPO / "exporter/threenines/__init__.py").read_text())
    assert version, "threenines.__version__ not found"
    assert f"Version: {version[1]}\n" in fields, f"debian/changelog's version is not threenines' {version[1]}"
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert f"Architecture: {arch}\n" in fields, "Architecture: any, for the C wire"
    # bookworm's libraries, never its too-old pysnmp4/icmplib (those two are bundled privately)
    assert "python3-prometheus-client" in fields and "python3-yaml" in fields
    assert "pysnmp" not in fields and "icmplib" not in fields


def test_install_puts_each_file_where_the_readme_says(installed: Installed) -> None:
    files = set(installed.files)
    shipped = {
        "prometheus/rules/*.yml": "/usr/share/threenines/prometheus/rules",
        "alertmanager/templates/*.tmpl": "/usr/share/threenines/alertmanager/templates",
        "alertmanager/alertmanager.yml": "/usr/share/threenines/alertmanager",
        "grafana/dashboards/*.json": "/usr/share/threenines/grafana/dashboards",
        "zabbix_templates/*.yaml": "/usr/share/threenines/zabbix",
    }
    expected = {"/usr/bin/threenines", str(SERVICE), str(SYNC_SERVICE), str(SYNC_TIMER), str(DEFAULTS),
                str(INVENTORY), "/usr/share/doc/threenines/README.Debian", "/usr/share/doc/threenines/copyright"}
    for pattern, directory in shipped.items():
        sources = sorted(REPO.glob(pattern))
        assert sources, pattern
        expected |= {f"{directory}/{source.name}" for source in sources}
    assert not expected - files, f"not installed: {sorted(expected - files)}"
    assert any(re.fullmatch(r"/usr/lib/threenines/threenines/probes/_wire\.cpython-3\d+-.+\.so", f) for f in files), \
        "the C wire is not in the package"
    assert any(re.fullmatch(r"/usr/lib/threenines/threenines/exposition/_port_lines\.cpython-3\d+-.+\.so", f)
               for f in files), "the C port lines are not in the package"

    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "threenines"]).stdout.split()
    assert set(conffiles[::2]) == {str(DEFAULTS), str(INVENTORY)}
    assert INVENTORY.read_bytes() == (REPO / "examples/inventory.yml").read_bytes()

    user = pwd.getpwnam("threenines")
    assert user.pw_uid < 1000 and user.pw_shell == "/usr/sbin/nologin" and user.pw_dir == str(STATE)
    group = grp.getgrnam("threenines").gr_gid
    secrets = DEFAULTS.stat()
    assert (stat.S_IMODE(secrets.st_mode), secrets.st_uid, secrets.st_gid) == (0o640, 0, group), \
        "/etc/default/threenines holds secrets: 0640 root:threenines"
    state = STATE.stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid) == (0o750, user.pw_uid)


def test_the_private_libraries_run_on_bookworms_python(installed: Installed) -> None:
    """The bundled pysnmp and icmplib, and bookworm's pyasn1, cryptography and prometheus-client, import together
    in the installed layout as the service user; SNMPv3 AES privacy is available (README.Debian)."""
    probe = ("import sys; sys.path.insert(0, '/usr/lib/threenines'); import icmplib, pysnmp, prometheus_client, "
             "threenines.probes.snmp.client, threenines.probes._wire, threenines.exposition._port_lines; "
             "from pysnmp.proto.secmod.rfc3826.priv import aes; "
             "print(icmplib.__file__, pysnmp.__file__, prometheus_client.__file__, aes.PysnmpCryptoError)")
    result = run(["runuser", "-u", "threenines", "--", "/usr/bin/python3", "-I", "-c", probe], env=system_env())
    assert result.returncode == 0, result.stderr
    icmp, snmp, client, crypto_missing = result.stdout.split()
    assert icmp.startswith("/usr/lib/threenines/icmplib/") and snmp.startswith("/usr/lib/threenines/pysnmp/")
    assert client.startswith("/usr/lib/python3/dist-packages/"), "prometheus-client comes from bookworm"
    assert crypto_missing == "False", "SNMPv3 AES privacy needs python3-cryptography"


def test_systemd_analyze_verifies_the_installed_units(installed: Installed, tmp_path: Path) -> None:
    units = [str(SERVICE), str(SYNC_SERVICE), str(SYNC_TIMER)]
    result = run(["systemd-analyze", "verify", *units], timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), result.stdout + result.stderr
    # verify does check here without a running systemd: a unit whose program is missing fails it
    broken = tmp_path / "threenines-broken.service"
    broken.write_text("[Service]\nExecStart=/usr/bin/threenines-not-installed serve\n")
    assert run(["systemd-analyze", "verify", str(broken)], timeout=60).returncode != 0
    # the hardening, as systemd scores it offline: exposure at most 2.5 of 10 (the threshold counts in tenths)
    scored = run(["systemd-analyze", "security", "--offline=true", "--threshold=25", units[0], units[1]], timeout=60)
    assert scored.returncode == 0, scored.stdout[-3000:]


def test_the_units_say_how_the_exporter_runs(installed: Installed) -> None:
    service = Unit.read(SERVICE)
    expected = {"User": "threenines", "AmbientCapabilities": "CAP_NET_RAW", "CapabilityBoundingSet": "CAP_NET_RAW",
                "StateDirectory": "threenines", "EnvironmentFile": "-/etc/default/threenines",
                "ExecReload": "/bin/kill -HUP $MAINPID", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "NoNewPrivileges": "yes"}
    assert {key: service.one("Service", key) for key in expected} == expected
    start = service.command("ExecStart", service.environment())
    assert start[:2] == ["/usr/bin/threenines", "serve"]
    assert " --config /etc/threenines/inventory.yml --state-dir /var/lib/threenines" in " ".join(start)
    sync, timer = Unit.read(SYNC_SERVICE), Unit.read(SYNC_TIMER)
    assert sync.command("ExecStart", sync.environment())[1:3] == ["maintenance", "sync"]
    assert timer.all("Timer", "OnCalendar") and timer.one("Install", "WantedBy") == "timers.target"


def test_prometheus_and_alertmanager_load_the_shipped_rules_and_template(installed: Installed, tmp_path: Path) -> None:
    """The README's snippets for Debian's prometheus and prometheus-alertmanager, checked by their own tools."""
    prometheus = tmp_path / "prometheus.yml"
    prometheus.write_text("rule_files:\n  - /usr/share/threenines/prometheus/rules/*.yml\n"
                          "scrape_configs:\n  - job_name: threenines\n"
                          "    static_configs: [{targets: ['127.0.0.1:9839']}]\n")
    result = run(["promtool", "check", "config", str(prometheus)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = len(list(Path("/usr/share/threenines/prometheus/rules").glob("*.yml")))
    assert result.stdout.count("SUCCESS:") >= 1 + rules, result.stdout
    alertmanager = tmp_path / "alertmanager.yml"
    alertmanager.write_text("templates:\n  - /usr/share/threenines/alertmanager/templates/*.tmpl\n"
                            "route: {receiver: noc}\nreceivers: [{name: noc}]\n")
    result = run(["amtool", "check-config", str(alertmanager)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"- 1 templates\s+SUCCESS", result.stdout), result.stdout


def test_the_installed_exporter_probes_and_reloads_as_its_unit_runs_it(installed: Installed, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    INVENTORY.write_text(inventory(port, [("uplink-a", "127.0.10.1")]))  # the admin edits the conffile
    check = run(["runuser", "-u", "threenines", "--", "/usr/bin/threenines", "check", "--config", str(INVENTORY)],
                env=system_env())
    assert check.returncode == 0, check.stdout + check.stderr
    # more serve options go in /etc/default/threenines: here /metrics renders every second, not every 15
    with DEFAULTS.open("a") as defaults:
        defaults.write('THREENINES_OPTS="--tick 1"\n')

    service = Unit.read(SERVICE)
    with running(service.as_systemd_runs("ExecStart"), tmp_path / "serve.log", ready_url=url) as exporter:
        def answered(target: str) -> bool:
            text = http_get(url)[1].decode()
            return (metric(text, "threenines_probe_total", customer="acme", target=target) or 0) >= 1 \
                and metric(text, "threenines_probe_loss_ratio", customer="acme", target=target) == 0

        wait_until(lambda: answered("uplink-a"), 20, what="an answered probe of uplink-a")
        text = http_get(url)[1].decode()
        assert metric(text, "threenines_build_info", wire="native") == 1, "the C wire runs"
        assert Path(f"/proc/{exporter.pid}/cmdline").read_bytes().endswith(b"\0--tick\x001\0")
        assert "raw, privileged" in exporter.log(), exporter.log()
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{exporter.pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Uid"].split()[0] == str(pwd.getpwnam("threenines").pw_uid)
        assert int(status["CapEff"], 16) == CAP_NET_RAW and int(status["CapBnd"], 16) == CAP_NET_RAW, \
            "CAP_NET_RAW is the only capability"
        ledger = STATE / "outages.sqlite"
        wait_until(ledger.exists, 10, what=f"{ledger}")
        assert ledger.stat().st_uid == pwd.getpwnam("threenines").pw_uid

        # edit, then `systemctl reload`: the unit's ExecReload with $MAINPID, as the unit's user
        INVENTORY.write_text(inventory(port, [("uplink-a", "127.0.10.1"), ("uplink-b", "127.0.10.2")]))
        reload = run(service.as_systemd_runs("ExecReload", MAINPID=str(exporter.pid)))
        assert reload.returncode == 0, reload.stderr
        wait_until(lambda: answered("uplink-b"), 20, what="the reloaded inventory's new port to be probed")
        assert metric(http_get(url)[1].decode(), "threenines_config_last_reload_successful") == 1
    log = (tmp_path / "serve.log").read_text()
    assert "msg=stopped" in log, log[-2000:]


def test_the_maintenance_sync_unit_turns_a_window_into_a_silence(installed: Installed, tmp_path: Path) -> None:
    am_port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: noc}\nreceivers: [{name: noc}]\n")
    argv = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]
    with running(argv, tmp_path / "am.log", ready_url=f"http://127.0.0.1:{am_port}/-/ready"):
        INVENTORY.write_text(inventory(free_port(), [("uplink-a", "127.0.10.1")]))
        now = time.time()
        EXCLUSIONS.write_text(
            "exclusions:\n  - id: CHG-1\n    customer: acme\n    services: [connectivity]\n"
            f"    start: {datetime.fromtimestamp(now - 60, UTC).isoformat()}\n"
            f"    end: {datetime.fromtimestamp(now + 3600, UTC).isoformat()}\n"
            "    reason: maintenance\n    reference: CHG-1\n    approved_by: noc@provider.example\n")
        # the admin points the timer at this Alertmanager in /etc/default/threenines, as README.Debian says
        with DEFAULTS.open("a") as defaults:
            defaults.write(f"THREENINES_ALERTMANAGER_URL=http://127.0.0.1:{am_port}\n")
        sync = Unit.read(SYNC_SERVICE)
        result = run(sync.as_systemd_runs("ExecStart"), timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        _, body = http_get(f"http://127.0.0.1:{am_port}/api/v2/silences")
        active = [s for s in json.loads(body) if s["status"]["state"] == "active"]
        assert [{m["name"]: m["value"] for m in s["matchers"]}.get("customer") for s in active] == ["acme"], active


def test_purge_removes_the_package_its_configuration_and_its_ledgers(installed: Installed) -> None:
    started = time.monotonic()
    result = apt("purge", "-y", "threenines")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    print(f"apt-get purge: {time.monotonic() - started:.1f}s")
    assert package_status() == "not-installed"
    files = [f for f in installed.files if not Path(f).is_dir()]
    assert files and not [f for f in files if os.path.lexists(f)], "files left after purge"
    # conffiles (edited ones too), the admin's exclusions beside them, the ledgers, the private modules
    left = [p for p in (*OWNED_PATHS, Path("/usr/lib/threenines"), Path("/usr/share/threenines")) if p.exists()]
    assert not left, f"left after purge: {left}"
    assert "/etc/default/threenines" not in run(["dpkg-statoverride", "--list"]).stdout
    # the system user stays, as adduser's documentation advises (debian/threenines.postrm says why)
    assert pwd.getpwnam("threenines").pw_uid < 1000
