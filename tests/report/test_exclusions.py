"""The exclusions ledger: validation names file, line and field; a rule the loader accepts expands per window,
exactly as dateutil does from its first occurrence, at a cost that does not grow with its age; recurring windows
keep local time; the unreported-outage policy is off by default. Fuzz targets at the end."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from dateutil import rrule as rrulelib
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from threenines.config import exclusions
from threenines.config.configfile import ConfigError
from threenines.config.exclusions import load_exclusions
from threenines.report.collect import Evidence, Outage
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
    ledger = load_exclusions(REPO / "examples" / "exclusions.yml", {"acme": BERLIN})
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
        load_exclusions(path, {"acme": BERLIN})
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


def test_a_bad_rrule_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY + "    rrule: FREQ=SOMETIMES\n")
    with pytest.raises(ConfigError, match=r":10 exclusions\[0\]\.rrule: 'FREQ=SOMETIMES': FREQ=SOMETIMES is not one"):
        load_exclusions(path)


def recurring(rule: str, entry: str = ENTRY) -> str:
    """ENTRY repeating by rule (on line 8, after reason)."""
    return entry.replace("reason: maintenance", f"reason: maintenance\n    rrule: {rule}")


# Each case was accepted before and then crashed or stalled every tick, or silently changed the window.
@pytest.mark.parametrize(("text", "where", "message"), [
    # year 1 overflowed datetime ("year -7972 is out of range") in every tick
    (recurring("FREQ=WEEKLY", ENTRY.replace("2026-10-07T01:00:00+02:00", "0001-01-01T00:00:00Z")),
     ":5 exclusions[0].start", "'0001-01-01T00:00:00Z' is not within the years 1970 to 2199"),
    (ENTRY.replace("2026-10-07T03:00:00+02:00", "9999-12-31T23:59:59-12:00"),
     ":6 exclusions[0].end", "not within the years 1970 to 2199"),
    # 5 s per tick: expanded minute by minute from DTSTART
    (recurring("FREQ=MINUTELY"), ":8 exclusions[0].rrule", "FREQ=MINUTELY repeats more often than hourly"),
    (recurring("FREQ=HOURLY;BYMINUTE=0,30"), ":8 exclusions[0].rrule", "more often than hourly"),
    (recurring("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12;BYMINUTE=0,30"), ":8 exclusions[0].rrule",
     "more than 24 times a day"),
    # a tick that never ended
    (recurring("FREQ=DAILY;INTERVAL=0"), ":8 exclusions[0].rrule", "INTERVAL=0 must be a whole number from 1 to 1000"),
    (recurring("FREQ=DAILY;INTERVAL=-1"), ":8 exclusions[0].rrule", "INTERVAL=-1 must be a whole number"),
    # the window silently disappeared
    (recurring("FREQ=DAILY;COUNT=0"), ":8 exclusions[0].rrule",
     "COUNT=0 must be a whole number from 1 to 10000 (a rule without occurrences would silently remove"),
    # DTSTART silently overrode start:
    (recurring('"DTSTART:20250101T000000Z\\nRRULE:FREQ=DAILY"'), ":8 exclusions[0].rrule",
     "DTSTART would override start: remove it"),
    (recurring("RRULE:FREQ=DAILY;DTSTART=20250101T000000Z"), ":8 exclusions[0].rrule", "DTSTART would override"),
    (recurring('"RRULE:FREQ=DAILY\\nEXDATE:20261008T010000Z"'), ":8 exclusions[0].rrule", "write one RRULE line"),
    # start (a Wednesday) silently not the first window
    (recurring("FREQ=WEEKLY;BYDAY=SU"), ":5 exclusions[0].start",
     "start (Wed 2026-10-07 01:00:00) is not one of its occurrences (the next is Sun 2026-10-11 01:00:00)"),
    (recurring("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"), ":8 exclusions[0].rrule", "matches no date in the 400 years"),
    (recurring("FREQ=HOURLY", ENTRY.replace("03:00:00+02:00", "04:00:00+02:00")), ":6 exclusions[0].end",
     "a window repeating every 1h lasts at most that long: this one lasts 3h"),
    (recurring("FREQ=WEEKLY;UNTIL=20261231T000000"), ":8 exclusions[0].rrule", "is not a UTC time"),
    (recurring("FREQ=WEEKLY;UNTIL=20261001T000000Z"), ":8 exclusions[0].rrule", "UNTIL is before start"),
    (recurring("FREQ=WEEKLY;COUNT=3;UNTIL=20261231T000000Z"), ":8 exclusions[0].rrule", "COUNT and UNTIL together"),
    (recurring("FREQ=YEARLY;INTERVAL=1000;COUNT=2"), ":8 exclusions[0].rrule",
     "COUNT=2 is not reached within 400 years of start (1 occurrences)"),
    (recurring("FREQ=DAILY;BYEASTER=0"), ":8 exclusions[0].rrule", "'BYEASTER' is not an RRULE part"),
    (recurring("FREQ=DAILY;BYDAY=1MO"), ":8 exclusions[0].rrule", "needs FREQ=MONTHLY or YEARLY"),
    (recurring("FREQ=WEEKLY;BYMONTHDAY=1"), ":8 exclusions[0].rrule", "BYMONTHDAY is not allowed with FREQ=WEEKLY"),
    (recurring("FREQ=MONTHLY;BYMONTHDAY=32"), ":8 exclusions[0].rrule", "'32' is not a whole number from 1 to 31"),
])
def test_rules_that_cannot_be_expanded_are_refused_where_they_are_written(tmp_path: Path, text: str, where: str,
                                                                          message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_exclusions(path, {"acme": BERLIN})
    assert f"{path}{where}: " in str(err.value) and message in str(err.value), str(err.value)


@contextlib.contextmanager
def counting_expansion() -> Iterator[dict[str, int]]:
    """How many occurrences dateutil generates meanwhile: the work expansions do (the buckets start empty)."""
    counter = {"occurrences": 0}
    build = exclusions.Rule.build

    def counting(rule: exclusions.Rule, *args, **kwargs):
        for occurrence in build(rule, *args, **kwargs):
            counter["occurrences"] += 1
            yield occurrence

    exclusions._bucket.cache_clear()
    exclusions.Rule.build = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        exclusions.Rule.build = build  # type: ignore[method-assign]


@pytest.fixture
def expanded() -> Iterator[dict[str, int]]:
    with counting_expansion() as counter:
        yield counter


def test_a_rule_expands_per_window_not_from_its_start(tmp_path: Path, expanded: dict[str, int]) -> None:
    text = recurring("FREQ=DAILY", ENTRY.replace("2026-10-07", "1970-01-07").replace("+02:00", "+01:00"))
    [ex] = load_exclusions(write(tmp_path, text), {"acme": BERLIN}).exclusions
    work = []
    for month in (Month(1970, 2), Month(2199, 2)):
        expanded["occurrences"] = 0
        got = ex.occurrences(month.window(BERLIN), BERLIN)
        work.append(expanded["occurrences"])
        local = {datetime.fromtimestamp(s, BERLIN).strftime("%d %H:%M") for s, _ in got}
        assert local == {f"{day:02d} 01:00" for day in range(1, 29)}
    # 229 years later, no more work: the days of the (at most two) 31-day buckets the month touches, and a few
    # days of margin around each
    assert max(work) <= 2 * (31 + 5)


def test_a_tick_reuses_the_expansion_and_an_ended_rule_costs_nothing(tmp_path: Path,
                                                                     expanded: dict[str, int]) -> None:
    hourly_from_2025 = ENTRY.replace("03:00:00+02:00", "01:30:00+02:00").replace("2026-10-07", "2025-01-01")
    four_weeks = recurring("FREQ=WEEKLY;COUNT=4").split("\n", 1)[1].replace("id: X1", "id: X2")
    path = write(tmp_path, recurring("FREQ=HOURLY", hourly_from_2025.replace("+02:00", "+01:00")) + four_weeks)
    hourly, weekly = load_exclusions(path, {"acme": BERLIN}).exclusions
    now = datetime(2026, 10, 20, 12, 10, tzinfo=BERLIN).timestamp()
    expanded["occurrences"] = 0
    assert hourly.occurrences((now, now + 1), BERLIN) == [(now - 600, now + 1200)]
    assert 0 < expanded["occurrences"] <= 31 * 24 + 60  # one bucket
    expanded["occurrences"] = 0
    for tick in range(1, 80):  # ticks every 15 s until the window ends at 12:30
        assert hourly.occurrences((now + 15 * tick, now + 15 * tick + 1), BERLIN)
    assert expanded["occurrences"] == 0  # the same bucket
    after = datetime(2026, 10, 29, tzinfo=BERLIN).timestamp()
    assert weekly.occurrences((after, after + 86400 * 365), BERLIN) == []  # its 4 weeks ended on 2026-10-28
    assert len(weekly.occurrences(Month(2026, 10).window(BERLIN), BERLIN)) == 4
    assert expanded["occurrences"] <= 2 * 4  # the month touches two buckets; the 4 weeks end the iteration


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY + ENTRY.split("\n", 1)[1])
    with pytest.raises(ConfigError, match="duplicate exclusion id 'X1'"):
        load_exclusions(path)


def test_recurring_windows_stay_at_local_time_across_the_dst_change(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRY.replace("reason: maintenance", "reason: maintenance\n    rrule: FREQ=WEEKLY;COUNT=4"))
    [ex] = load_exclusions(path).exclusions
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
    off = load_exclusions(write(tmp_path, reported))
    assert service_statement(spec, "connectivity", _evidence(outages, 1200), off,
                             Options()).counted_outage_seconds == 1200
    on = load_exclusions(write(tmp_path, reported + "policy:\n  unreported_outages_not_counted: true\n"))
    got = service_statement(spec, "connectivity", _evidence(outages, 1200), on, Options())
    # the first outage was reported within 5 days, the second was not
    assert got.excluded_seconds["unreported"] == 600 and got.counted_outage_seconds == 600


# -- fuzz targets ------------------------------------------------------------------------------------------

ZONES = [ZoneInfo(name) for name in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC")]
FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def int_list(values: st.SearchStrategy[int], max_size: int = 3) -> st.SearchStrategy[str]:
    return st.lists(values, min_size=1, max_size=max_size, unique=True).map(lambda xs: ",".join(map(str, xs)))


@st.composite
def plausible_rules(draw: st.DrawFn) -> str:
    """Rules an operator might write: every part the loader accepts, in the combinations RFC 5545 allows."""
    freq = draw(st.sampled_from(FREQS))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 4))}")
    if freq in ("YEARLY", "MONTHLY", "HOURLY") and draw(st.booleans()):
        parts.append(f"BYMONTH={draw(int_list(st.integers(1, 12)))}")
    if freq != "WEEKLY" and draw(st.booleans()):
        parts.append(f"BYMONTHDAY={draw(int_list(st.integers(1, 28) | st.integers(-3, -1)))}")
    if draw(st.booleans()):
        ordinal = st.sampled_from(["", "1", "2", "-1"]) if freq in ("MONTHLY", "YEARLY") else st.just("")
        days = st.lists(st.tuples(ordinal, st.sampled_from(DAYS)), min_size=1, max_size=3, unique=True)
        parts.append("BYDAY=" + ",".join(n + d for n, d in draw(days)))
    if freq != "HOURLY" and draw(st.booleans()):
        parts.append(f"BYHOUR={draw(int_list(st.integers(0, 23)))}")
    if draw(st.booleans()):
        parts.append(f"BYMINUTE={draw(st.integers(0, 59))}")
    if len(parts) > 2 and draw(st.booleans()):
        parts.append(f"BYSETPOS={draw(int_list(st.integers(1, 2) | st.just(-1), 2))}")
    if draw(st.booleans()):
        parts.append(f"WKST={draw(st.sampled_from(DAYS))}")
    end = draw(st.sampled_from(["", "count", "until"]))
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 60))}")
    elif end == "until":
        parts.append(f"UNTIL={2026 + draw(st.integers(0, 3))}0615T000000Z")
    return ";".join(draw(st.permutations(parts)))


def first_occurrence(rule: str, anchor: datetime) -> datetime | None:
    """The rule's first occurrence from anchor, searched on a copy 7,600 years on (weekdays repeat every 400
    years), where dateutil gives up at year 9999 instead of searching forever for an impossible rule."""
    shift = 7600
    endless = ";".join(part for part in rule.split(";") if not part.startswith(("COUNT", "UNTIL")))
    found = next(iter(rrulelib.rrulestr(endless, dtstart=anchor.replace(year=anchor.year + shift))), None)
    return found.replace(year=found.year - shift) if found is not None else None


def entry(start: datetime, length: timedelta, rule: str | None) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": "X", "customer": "acme", "services": ["connectivity"], "start": start.isoformat(),
        "end": (start + length).isoformat(), "reason": "maintenance", "reference": "R",
        "approved_by": "noc@example.net"}
    return fields if rule is None else {**fields, "rrule": rule}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(rule=plausible_rules(), zone=st.sampled_from(ZONES),
       anchor=st.datetimes(datetime(2020, 1, 1), datetime(2026, 12, 31)).map(lambda d: d.replace(microsecond=0)),
       minutes=st.integers(1, 180), months_on=st.integers(0, 120))
def test_an_accepted_rule_expands_any_month_as_dateutil_does_from_its_start(
        rule: str, zone: ZoneInfo, anchor: datetime, minutes: int, months_on: int) -> None:
    first = first_occurrence(rule, anchor.replace(tzinfo=zone))
    assume(first is not None and first.year <= 2199)
    # a round trip through Unix time settles a wall time that does not exist (a DST gap) as the loader will
    first = datetime.fromtimestamp(first.timestamp(), zone)
    length = timedelta(minutes=minutes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exclusions.yml"
        path.write_text(yaml.safe_dump({"exclusions": [entry(first, length, rule)]}))
        try:
            [ex] = load_exclusions(path, {"acme": zone}).exclusions
        except ConfigError as err:
            # a plausible rule is refused only for what the loader promises to refuse
            assert any(reason in str(err) for reason in ("UNTIL is before start", "not one of its occurrences",
                                                         "is not reached within", "lasts at most")), str(err)
            event("refused")
            return
    event("compared with dateutil")
    hourly = "FREQ=HOURLY" in rule
    month = Month(first.year, first.month)
    for _ in range(months_on if not hourly else months_on % 3):
        month = month.next()
    lo, hi = month.window(zone)
    got = ex.occurrences((lo, hi), zone)
    # the reference: every occurrence from the first one, as dateutil generates them
    expected = []
    for occurrence in rrulelib.rrulestr(rule, dtstart=first):
        start = occurrence.timestamp()
        if start >= hi + 2 * 86400:
            break
        if lo < start + length.total_seconds() and start < hi:
            expected.append((start, start + length.total_seconds()))
    assert sorted(got) == sorted(expected)


# -- arbitrary input: the loader's refusal is always located, its acceptance always expands ---------------------

KEYS = ("id", "customer", "services", "start", "end", "reason", "reference", "approved_by", "rrule", "extra")
PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO",
         "BYHOUR", "BYMINUTE", "BYSECOND", "BYSETPOS", "BYEASTER", "DTSTART", "RRULE:FREQ", "EXDATE")
NUMBERS = st.integers(-100, 400) | st.integers(-(10**12), 10**12) | st.sampled_from([0, 1, 7, 53, 366, 9999])


@st.composite
def times(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([1, 1969, 1970, 2025, 2026, 2199, 2200, 9999]) | st.integers(1, 9999))
    base = f"{year:04d}-{draw(st.integers(1, 12)):02d}-{draw(st.integers(1, 28)):02d}T{draw(st.integers(0, 23)):02d}"
    offset = draw(st.sampled_from(["Z", "+02:00", "-12:00", "+14:00", "", "+25:00", ".5Z"]))
    return f"{base}:{draw(st.integers(0, 59)):02d}:00{offset}"


@st.composite
def rrule_texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(PARTS))
        value = draw(st.sampled_from((*FREQS, "MINUTELY", "SECONDLY", "SOMETIMES")) if name.endswith("FREQ") else
                     st.sampled_from((*DAYS, "1MO", "-1FR", "53SU", "0MO", "XX")) if name in ("BYDAY", "WKST") else
                     times().map(lambda t: t.replace("-", "").replace(":", "")) if name in ("UNTIL", "DTSTART") else
                     st.lists(NUMBERS, min_size=0, max_size=4).map(lambda xs: ",".join(map(str, xs))))
        parts.append(f"{name}={value}" if draw(st.integers(0, 9)) else name)
    separator = draw(st.sampled_from([";", ";", "\n", ";;"]))
    return separator.join(parts)


def values() -> st.SearchStrategy[object]:
    scalars = st.one_of(times(), rrule_texts(), st.text(max_size=12), NUMBERS, st.booleans(), st.none(),
                        st.sampled_from(["acme", "nobody", "maintenance", "connectivity", "power"]))
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars,
                                                                             max_size=2))


@st.composite
def exclusion_entries(draw: st.DrawFn, zone: ZoneInfo) -> dict[str, object]:
    """Mostly well-formed entries (a third with a rule that fits their start) with a few fields replaced by
    anything: the parser's edges, more than YAML's."""
    start = draw(st.datetimes(datetime(1970, 1, 2), datetime(2199, 12, 1))).replace(microsecond=0, tzinfo=zone)
    rule = draw(st.none() | rrule_texts() | plausible_rules() | plausible_rules())
    if rule is not None and _parses(rule) and draw(st.integers(0, 3)):
        start = first_occurrence(rule, start) or start
    good = entry(datetime.fromtimestamp(start.timestamp(), zone), timedelta(minutes=draw(st.integers(1, 3000))),
                 rule)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True)) if draw(st.booleans()) else ():
        if draw(st.booleans()):
            good[key] = draw(values())
        else:
            good.pop(key, None)
    return good


# Printable: YAML's reader refuses a control character with an error configfile does not locate (its gap, not
# the exclusions parser's).
JUNK = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=3)


def _parses(rule: str) -> bool:
    try:
        exclusions.parse_rrule(rule)
    except exclusions.RuleError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(zone_and_entries=st.sampled_from(ZONES).flatmap(
           lambda zone: st.tuples(st.just(zone), st.lists(exclusion_entries(zone), min_size=1, max_size=3))),
       garble=st.none() | st.none() | st.tuples(st.integers(0, 2000), JUNK),
       month=st.tuples(st.integers(1970, 2199), st.integers(1, 12)))
def test_any_input_is_refused_with_its_location_or_expands_any_month(
        zone_and_entries: tuple[ZoneInfo, list[dict[str, object]]], garble: tuple[int, str] | None,
        month: tuple[int, int]) -> None:
    zone, entries = zone_and_entries
    for index, entry in enumerate(entries):
        if entry.get("id") == "X":
            entry["id"] = f"X{index}"
    text = yaml.safe_dump({"exclusions": entries}, allow_unicode=True)
    if garble is not None:
        at, junk = garble
        text = text[:at] + junk + text[at:]
    exclusions._bucket.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exclusions.yml"
        path.write_text(text, encoding="utf-8")
        try:
            ledger = load_exclusions(path, {"acme": zone})
        except ConfigError as err:
            assert err.line >= 1 and str(err).startswith(f"{path}:{err.line}"), str(err)
            event("refused")
            return
    event("expanded" if any(ex.rrule for ex in ledger.exclusions) else "expanded without a rule")
    with counting_expansion() as counted:
        for ex in ledger.exclusions:
            near = datetime.fromtimestamp(ex.start, zone)
            for lo, hi in (Month(*month).window(zone), Month(near.year, near.month).window(zone)):
                got = ex.occurrences((lo, hi), zone)
                assert got == sorted(got)
                assert all(s < hi and e > lo and e - s == ex.end - ex.start for s, e in got)
                assert len(got) <= 24 * 31 * 2  # at most hourly: a month, and a month before it for long windows
    # the work: at most hourly, over the two 31-day buckets a month touches and their margins, whatever the rule
    assert counted["occurrences"] <= len(ledger.exclusions) * 2 * 2 * 24 * (31 + 9)
