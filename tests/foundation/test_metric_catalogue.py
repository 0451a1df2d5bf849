"""The metric contract three ways (issue 17): a real exporter's /metrics ⇄ the catalogue
(threenines.exposition.catalogue) ⇄ docs/metrics.md. Names, types and label sets on every side; help text between
the catalogue and what the exporter writes. Until the catalogue only the consumers (dashboards, Zabbix) were
checked against the page, the producer was not.

`threenines demo` is the richest real exporter the tests can start alone: loopback ports, snmpsim UPS and PDUs,
the audit webhook. A plain `threenines serve --vantage` with application checks adds what the demo has not: the
application families, and a replica's `vantage` label. Families are read from the `# TYPE` and `# HELP` lines,
which the exporter writes even for a family with no series yet (a histogram before its first observation);
label sets from every series.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import REPO, VENV_BIN, free_port, running, wait_until
from threenines.exposition import catalogue
from threenines.exposition.catalogue import FAMILIES, PREFIX, Family

pytestmark = pytest.mark.netns  # root: the demo's nftables table

DOCS = REPO / "docs" / "metrics.md"
APPLICATION_FAMILIES = {name for name in FAMILIES if name.startswith("threenines_application_")}
# Catalogued families the demo cannot serve, each with the reason; nothing else may be missing.
NOT_IN_THE_DEMO: dict[str, str] = dict.fromkeys(
    APPLICATION_FAMILIES,
    "the demo inventory has no application checks; test_a_replica_serves_the_application_families serves them")


@dataclass
class Exposed:
    """One family as a scrape shows it."""

    type: str = ""
    help: str | None = None
    label_sets: set[frozenset[str]] = field(default_factory=set)


def exposed(text: str) -> dict[str, Exposed]:
    """The threenines_ families of an exposition: # TYPE, # HELP, and the label names of each series."""
    families: dict[str, Exposed] = {}
    for name, kind in re.findall(r"^# TYPE (threenines_\w+) (\w+)$", text, re.M):
        families[name] = Exposed(kind)
    for name, help_text in re.findall(r"^# HELP (threenines_\w+) (.*)$", text, re.M):
        # The text format escapes backslash and newline in help (and nothing else).
        families.setdefault(name, Exposed()).help = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1],
                                                           help_text)
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        series = line.rpartition(" ")[0]
        name, _, labels = series.partition("{")
        family = name if name in families else re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in families, f"a series of no declared family: {line}"
        if family != name:
            assert families[family].type == "histogram", f"{line}: {family} is not a histogram"
        families[family].label_sets.add(frozenset(re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', labels)) - {"le"})
    return families


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names) from the table rows of docs/metrics.md (`| `name` | type | labels | ... |`)."""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `threenines_"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        assert name not in rows, f"docs/metrics.md documents {name} twice"
        names = re.sub(r"\([^)]*\)", "", cells[2])  # "reason (`a`, `b`)": the values in parentheses
        rows[name] = (cells[1], frozenset(n.strip() for n in names.split(",") if n.strip()))
    return rows


def diff_served(served: dict[str, Exposed], vantage: bool) -> list[str]:
    """What a scrape says differently from the catalogue, for the families it serves (one line each)."""
    problems = []
    for name, family in sorted(served.items()):
        entry = FAMILIES.get(name)
        if entry is None:
            problems.append(f"{name}: served, not in the catalogue")
            continue
        if family.type != entry.exposed_type:
            problems.append(f"{name}: served as {family.type}, catalogued as {entry.exposed_type} ({entry.kind})")
        if family.help != entry.help:
            problems.append(f"{name}: served help {family.help!r}, catalogued {entry.help!r}")
        expected = frozenset(entry.labels) | ({"vantage"} if vantage and entry.vantage else set())
        for labels in family.label_sets:
            if labels != expected:
                problems.append(f"{name}: a series labelled {sorted(labels)}, catalogued {sorted(expected)}")
    return problems


# --- catalogue ⇄ docs/metrics.md (no process) ---

def test_the_catalogue_is_the_documented_contract() -> None:
    docs = documented()
    page = set(re.findall(r"`(threenines_\w+)", DOCS.read_text(encoding="utf-8")))
    assert page - set(docs) == set(), "named on docs/metrics.md but in no table row of it"
    assert set(docs) - set(FAMILIES) == set(), "documented, not in the catalogue"
    assert set(FAMILIES) - set(docs) == set(), "in the catalogue, not documented in docs/metrics.md"
    problems = [f"{name}: documented {docs[name]}, catalogued {(f.kind, frozenset(f.labels))}"
                for name, f in FAMILIES.items() if docs[name] != (f.kind, frozenset(f.labels))]
    assert problems == []


def test_each_family_is_one_constant_named_after_it() -> None:
    constants = {key: value for key, value in vars(catalogue).items() if isinstance(value, Family)}
    assert {key: f.name for key, f in constants.items()} == {
        f.name.removeprefix(PREFIX).upper(): f.name for f in constants.values()}
    assert list(FAMILIES.values()) == list(constants.values())
    assert len(FAMILIES) >= 70


def test_the_catalogue_refuses_a_family_against_the_naming_conventions() -> None:
    bad = [("threenines_probes", "counter", "no _total", ()),
           ("threenines_up_total", "gauge", "a gauge with _total", ()),
           ("threenines_delay", "histogram", "unit missing", (), "seconds"),
           ("threenines_customer", "info", "an info without _info", ()),
           ("threenines_x", "gauge", "two\nlines", ()),
           ("threenines_x", "gauge", "h", ("customer", "customer")),
           ("threenines_x", "gauge", "h", ("vantage",))]
    for args in bad:
        try:
            Family(*args)  # type: ignore[arg-type]
        except ValueError as err:
            assert args[0] in str(err)
        else:
            raise AssertionError(f"accepted {args}")


# --- real exporter ⇄ catalogue ---

def test_the_demos_families_are_the_catalogued_ones(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "demo", "--listen", f"127.0.0.1:{port}"]
    with running(argv, tmp_path / "demo.log", ready_url=f"http://127.0.0.1:{port}/healthz"):
        # Power families appear once the devices have been polled.
        wait_until(lambda: sample(scrape(port), "threenines_device_up", device="pdu-a") == 1, 60, 0.5,
                   "the demo's PDUs to be polled")
        served = exposed(scrape(port))
    missing = set(FAMILIES) - set(served) - set(NOT_IN_THE_DEMO)
    assert missing == set(), f"catalogued but not served by a real exporter: {sorted(missing)}"
    assert diff_served(served, vantage=False) == []
    # The label check is not vacuous: most families have series in the demo (45 of 65 in a run; the others wait
    # for an event: a histogram's first observation, a delivery failure, an inferred blackout).
    assert sum(1 for family in served.values() if family.label_sets) >= 40


def test_a_replica_serves_the_application_families_and_labels_its_contract_families(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # a real application that accepts connections
        app_port = listener.getsockname()[1]
        config = tmp_path / "inventory.yml"
        config.write_text(inventory_text({"port-a": "127.0.0.1"}, interval="2s") + (
            "    applications:\n"
            f"      - {{id: shop, tcp: {{address: '127.0.0.1:{app_port}'}}, interval: 2s, timeout: 1s}}\n"
            f"      - {{id: www, http: {{url: 'http://127.0.0.1:{free_port()}/'}}, interval: 2s, timeout: 1s}}\n"))
        server, port = serve(tmp_path, config, extra=["--vantage", "vp-1"])
        with server:
            wait_until(lambda: (sample(scrape(port), "threenines_application_check_failures_total",
                                       target="www") or 0) >= 1
                       and sample(scrape(port), "threenines_probe_last_timestamp_seconds") is not None,
                       30, 0.5, "an application check to fail and a probe to complete")
            served = exposed(scrape(port))
    assert set(served) >= APPLICATION_FAMILIES
    assert diff_served(served, vantage=True) == []
    vantaged = {name for name, f in served.items() if any("vantage" in labels for labels in f.label_sets)}
    assert {"threenines_service_up", "threenines_customer_info", "threenines_probe_total",
            "threenines_exporter_accounting_start_timestamp_seconds"} <= vantaged
