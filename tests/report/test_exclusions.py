"""The exclusions ledger: validation names file, line and field; recurring windows keep local time; the
unreported-outage policy is off by default."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from threenines.configfile import ConfigError
from threenines.report.collect import Evidence, Outage
from threenines.report.exclusions import load_ledger
from threenines.report.months import Month
from threenines.report.statement import CustomerSpec, Options, service_statement

REPO = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
ENTRY = """exclusions:
  - id: X1
    customer: acme
    services: [connectivity]
    start: 2026-10-07T01:00:00+02:00
    end: 2026-10-07T03:00:00+02:00
    reason: maintenance
    reference: CHG-1
    approved_by: noc@example.net
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exclusions.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_ledger_loads() -> None:
    ledger = load_ledger(REPO / "examples" / "exclusions.yml", {"acme": BERLIN})
    assert [e.id for e in ledger.exclusions] == ["CHG-2026-1042", "PWR-SUNDAYS", "CF-2026-10-10"]
    assert ledger.policy.unreported_outages_not_counted is False


@pytest.mark.parametrize(("change", "where", "message"), [
    (("2026-10-07T03:00:00+02:00", "2026-10-07T03:00:00"), ":6 exclusions[0].end", "no UTC offset"),
    (("reason: maintenance", "reason: holiday"), ":7 exclusions[0].reason", "not one of"),
    (("[connectivity]", "[network]"), ":4 exclusions[0].services", "not a service"),
    (("customer: acme", "customer: nobody"), ":3 exclusions[0].customer", "not in the inventory"),
    (("end: 2026-10-07T03:00:00+02:00", "end: 2026-10-06T03:00:00+02:00"), ":6 exclusions[0].end", "after start"),
    (("approved_by: noc@example.net", "rrule: FREQ=WEEKLY"), ":2 exclusions[0]", "approved_by"),
])
def test_validation_errors_name_file_line_and_field(tmp_path: Path, change, where: str, message: str) -> None:
    path = write(tmp_path, ENTRY.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_ledger(path, {"acme": BERLIN})
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


def test_a_bad_rrule_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY + "    rrule: FREQ=SOMETIMES\n")
    with pytest.raises(ConfigError, match=r":10 exclusions\[0\]\.rrule: 'FREQ=SOMETIMES' is not an RFC 5545"):
        load_ledger(path)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY + ENTRY.split("\n", 1)[1])
    with pytest.raises(ConfigError, match="duplicate exclusion id 'X1'"):
        load_ledger(path)


def test_recurring_windows_stay_at_local_time_across_the_dst_change(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY.replace("reason: maintenance", "reason: maintenance\n    rrule: FREQ=WEEKLY;COUNT=4"))
    [ex] = load_ledger(path).exclusions
    window = Month(2026, 10).window(BERLIN)
    starts = [s for s, _ in ex.occurrences(window, BERLIN)]
    local = [datetime.fromtimestamp(s, BERLIN).strftime("%m-%d %H:%M %z") for s in starts]
    assert local == ["10-07 01:00 +0200", "10-14 01:00 +0200", "10-21 01:00 +0200", "10-28 01:00 +0100"]


def _evidence(outages: list[Outage], raw: float) -> Evidence:
    start, end = Month(2026, 10).window(BERLIN)
    return Evidence("acme", "connectivity", start, end, outage_counter=raw, samples=(end - start) // 60,
                    has_data=True, outages=outages)


def test_unreported_outages_count_unless_the_policy_is_switched_on(tmp_path: Path) -> None:
    spec = CustomerSpec("acme", "Acme", "Europe/Berlin", 0.999, ("connectivity",))
    t = Month(2026, 10).window(BERLIN)[0] + 10 * 86400
    later = t + 5 * 86400
    outages = [Outage("p1", t, t + 600, t + 300, True, "test"), Outage("p1", later, later + 600, None, True, "test")]
    reported = f"""reports:
  - customer: acme
    service: connectivity
    reported_at: {datetime.fromtimestamp(t + 4 * 86400, BERLIN).isoformat()}
"""
    off = load_ledger(write(tmp_path, reported))
    assert service_statement(spec, "connectivity", _evidence(outages, 1200), off, Options())[
        "counted_outage_seconds"] == 1200
    on = load_ledger(write(tmp_path, reported + "policy:\n  unreported_outages_not_counted: true\n"))
    got = service_statement(spec, "connectivity", _evidence(outages, 1200), on, Options())
    # the first outage was reported within 5 days, the second was not
    assert got["excluded_seconds"]["unreported"] == 600 and got["counted_outage_seconds"] == 600
