"""`threenines report --ledger` with replica exporters: one outage ledger per vantage, merged by the contract's
rule (docs/design.md, "Replica exporters (vantages): the merge rule"). Real OutageLedger files written by the
exporter's own ledger class; the expected figures are the worked examples of docs/design.md, read from the rule's
words, not from the code.

The rule: a second is outage under `merge: all` when every vantage that has evidence for it says outage, under
`merge: any` when any vantage says outage; unknown only when no vantage has evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.intervals import Interval
from threenines.ledgers.outages import OutageLedger
from threenines.report.build import outages_from_ledgers, resolve_ledgers
from threenines.report.collect import Evidence, merge_vantages

START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
KEY = ("acme", "connectivity")
PORT = TargetKey("acme", "connectivity", "p1")
THRESHOLD = 300.0  # determined one probe interval after the first failed probe


def at(hhmm: str) -> float:
    hours, minutes = hhmm.split(":")
    return datetime(2026, 11, 10, int(hours), int(minutes), tzinfo=UTC).timestamp()


def write_ledger(path: Path, outages: list[tuple[str, str]]) -> Path:
    """A vantage's outage ledger as its exporter writes it: each outage determined, then ended (recovered)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger = OutageLedger(path)
    for first, last in outages:
        ff = at(first)
        ledger.record(OutageEvent("determined", PORT, ff + THRESHOLD, ff, ff + THRESHOLD))
        ledger.record(OutageEvent("ended", PORT, at(last), ff, ff + THRESHOLD, "recovered"))
    ledger.close()
    return path


def merged(tmp_path: Path, a: list[tuple[str, str]], b: list[tuple[str, str]], b_dead: list[Interval],
           policy: str) -> Evidence:
    ledgers = {"a": write_ledger(tmp_path / "a" / "outages.sqlite", a),
               "b": write_ledger(tmp_path / "b" / "outages.sqlite", b)}
    vantages = {v: Evidence(*KEY, START, END, vantage=v) for v in ("a", "b")}
    evidence = {KEY: Evidence(*KEY, START, END, vantages=vantages)}
    bounds = outages_from_ledgers(ledgers, evidence, START, END)
    # No-evidence time comes from Prometheus in the report (a ledger does not record its exporter's downtime
    # outside an outage); here it is given as the worked example states it.
    return merge_vantages(evidence[KEY], bounds[KEY], {"a": [], "b": b_dead}, policy)


def spans(ev: Evidence) -> list[tuple[float, float]]:
    return [piece for o in ev.outages for piece in o.outage_pieces()]


@pytest.mark.parametrize("policy", ["all", "any"])
def test_b_dead_for_an_hour_inside_as_outage_is_carried_by_a(tmp_path: Path, policy: str) -> None:
    # design.md row 1: a says outage 10:00–11:30; b says outage 10:00–10:20 and is dead 10:40–11:40.
    ev = merged(tmp_path, [("10:00", "11:30")], [("10:00", "10:20")], [(at("10:40"), at("11:40"))], policy)
    if policy == "all":
        # 10:20–10:40 b has evidence and says up; 10:40–11:30 only a has evidence, and it says outage.
        assert spans(ev) == [(at("10:00"), at("10:20")), (at("10:40"), at("11:30"))]
        assert ev.outage_counter == 70 * 60
    else:
        assert spans(ev) == [(at("10:00"), at("11:30"))]
        assert ev.outage_counter == 90 * 60
    assert ev.unknown_counter == 0  # a had evidence through b's dead hour
    assert ev.merged and {o.vantage for o in ev.outages} <= {"a", "a+b"}


@pytest.mark.parametrize("policy", ["all", "any"])
def test_two_overlapping_outages_all_takes_the_common_part_any_the_union(tmp_path: Path, policy: str) -> None:
    # design.md row 2: a says outage 10:05–10:25, b says outage 10:00–11:30; both have evidence throughout.
    ev = merged(tmp_path, [("10:05", "10:25")], [("10:00", "11:30")], [], policy)
    expected = [(at("10:05"), at("10:25"))] if policy == "all" else [(at("10:00"), at("11:30"))]
    assert spans(ev) == expected
    assert ev.outage_counter == (20 if policy == "all" else 90) * 60
    assert ev.unknown_counter == 0


def test_swapping_the_vantages_gives_the_same_figures(tmp_path: Path) -> None:
    one = merged(tmp_path / "1", [("10:05", "10:25")], [("10:00", "11:30")], [], "all")
    two = merged(tmp_path / "2", [("10:00", "11:30")], [("10:05", "10:25")], [], "all")
    assert spans(one) == spans(two) and one.outage_counter == two.outage_counter


def test_a_glob_names_each_ledger_by_its_directory_and_a_name_overrides_it(tmp_path: Path) -> None:
    for vantage in ("a", "b"):
        write_ledger(tmp_path / "ledgers" / vantage / "outages.sqlite", [])
    assert resolve_ledgers([str(tmp_path / "ledgers" / "*" / "outages.sqlite")]) == {
        "a": tmp_path / "ledgers" / "a" / "outages.sqlite", "b": tmp_path / "ledgers" / "b" / "outages.sqlite"}
    assert resolve_ledgers([f"east={tmp_path / 'ledgers' / 'a' / 'outages.sqlite'}",
                            f"west={tmp_path / 'ledgers' / 'b' / 'outages.sqlite'}"]) == {
        "east": tmp_path / "ledgers" / "a" / "outages.sqlite", "west": tmp_path / "ledgers" / "b" / "outages.sqlite"}
    # one ledger without a name stays the one exporter's record
    assert resolve_ledgers([str(tmp_path / "x.sqlite")]) == {"": tmp_path / "x.sqlite"}


def test_ambiguous_or_missing_ledgers_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"matches no file"):
        resolve_ledgers([str(tmp_path / "none" / "*.sqlite")])
    with pytest.raises(ValueError, match=r"two ledgers for vantage 'state'.*VANTAGE=PATH"):
        resolve_ledgers([str(tmp_path / "a" / "state" / "outages.sqlite"),
                         str(tmp_path / "b" / "state" / "outages.sqlite")])
    path = write_ledger(tmp_path / "a" / "outages.sqlite", [("10:00", "10:20")])
    vantages = {v: Evidence(*KEY, START, END, vantage=v) for v in ("a", "b")}
    evidence = {KEY: Evidence(*KEY, START, END, vantages=vantages)}
    with pytest.raises(ValueError, match=r"no --ledger for vantage 'b'"):
        outages_from_ledgers({"a": path}, evidence, START, END)
    with pytest.raises(ValueError, match=r"one exporter's ledger, but acme/connectivity has vantages a, b"):
        outages_from_ledgers({"": path}, evidence, START, END)
    with pytest.raises(ValueError, match=r"vantage 'c' is not one Prometheus knows \(a, b\)"):
        outages_from_ledgers({"a": path, "b": path, "c": path}, evidence, START, END)
