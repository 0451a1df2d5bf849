"""The statement's optional sections (docs/report.md): absent from the JSON when there is nothing to say, so a
statement without them is the schema-1 JSON it always was; present, their keys in the published order. And the
applications split, for arbitrary timelines: each second of an application outage is exactly one of inside the
connectivity outage, ports answered, connectivity unknown (truth computed second by second, as bit sets)."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.report.test_schema import _statement
from threenines.config.exclusions import Exclusions
from threenines.report.collect import Evidence, Outage
from threenines.report.inference import Inference
from threenines.report.months import Month
from threenines.report.schema import Statement
from threenines.report.statement import CustomerSpec, Options, application_section, customer_statement

APPLICATION_OUTAGE_KEYS = ["check", "start", "end", "start_unix", "end_unix", "determined", "seconds_in_month",
                           "ports_answered_seconds", "inside_connectivity_outage_seconds",
                           "connectivity_unknown_seconds", "classification", "billed", "end_exact", "open", "source"]
APPLICATIONS_KEYS = ["billable", "outage_seconds", "ports_answered_seconds", "inside_connectivity_outage_seconds",
                     "connectivity_unknown_seconds", "outages", "review"]
INFERRED_KEYS = ["device", "evidence", "since", "since_unix", "first_seen", "last_seen"]
MONTH = Month(2026, 10)
UTC = ZoneInfo("UTC")


def test_a_statement_without_the_sections_is_exactly_the_plain_dataclass_json() -> None:
    statement = _statement()
    before = dataclasses.asdict(statement)  # what schema 1 published before the sections, plus their None
    for customer in before["customers"]:
        assert customer.pop("applications") is None
        assert customer["notification"].pop("deliveries") is None
        for service in customer["services"]:
            for outage in service["outages"]:
                assert outage.pop("inferred_from") is None
    assert statement.to_dict() == before
    assert list(statement.to_dict()["customers"][0]) == list(before["customers"][0])  # and in the same order


def test_the_sections_keys_are_published_in_order() -> None:
    start, end = MONTH.window(UTC)
    t = start + 86400
    spec = CustomerSpec("acme", "Acme", "UTC", 0.999, ("power",), applications=True)
    power = Evidence("acme", "power", start, end, outage_counter=600.0, samples=(end - start) // 60, has_data=True,
                     down_samples=9, outages=[Outage("power", t, t + 600, t + 60, True, "prometheus")])
    app = Evidence("acme", "application", start, end, outages=[Outage("www", t, t + 300, t + 60, True, "ledger")])
    section = application_section(spec, app, None, [])
    customer = customer_statement(spec, MONTH, {"power": power}, Exclusions(), [], Options(scrape_interval=60.0),
                                  inferred=[Inference("acme", "ups-a", "output_off", t - 30, t + 60, t + 540)],
                                  applications=section)
    data = Statement("threenines.statement/1", str(MONTH), "final", [], 60.0, 0.99, "prometheus",
                     _statement().exclusions, [], [customer], []).to_dict()
    [c] = data["customers"]
    assert list(c)[-1] == "applications" and list(c["applications"]) == APPLICATIONS_KEYS
    [line] = c["applications"]["outages"]
    assert list(line) == APPLICATION_OUTAGE_KEYS
    # no connectivity service monitored: nothing says the ports answered
    assert (line["connectivity_unknown_seconds"], line["classification"]) == (300.0, "connectivity unknown")
    [outage] = c["services"][0]["outages"]
    assert list(outage)[-1] == "inferred_from" and list(outage["inferred_from"][0]) == INFERRED_KEYS
    assert any("rests on inference" in item for item in c["review"])


spans = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 120)).map(lambda p: (p[0], p[0] + p[1])),
                 max_size=5)


def _bits(items: list[tuple[int, int]]) -> int:
    out = 0
    for a, b in items:
        out |= ((1 << (b - a)) - 1) << a
    return out


@settings(max_examples=300, deadline=None)
@given(app=spans, down=spans, unknown=spans)
def test_each_application_outage_second_is_exactly_one_of_the_three(app, down, unknown) -> None:
    base = MONTH.window(UTC)[0]
    spec = CustomerSpec("acme", "Acme", "UTC", 0.999, ("connectivity",), applications=True)
    app_ev = Evidence("acme", "application", base, base + 1000,
                      outages=[Outage(f"c{i}", base + a, base + b, None, True, "ledger")
                               for i, (a, b) in enumerate(app)])
    conn = Evidence("acme", "connectivity", base, base + 1000,
                    outages=[Outage("p1", base + a, base + b, None, True, "ledger") for a, b in down])
    section = application_section(spec, app_ev, conn, [(base + a, base + b) for a, b in unknown])
    down_bits, unknown_bits = _bits(down), _bits(unknown)
    ordered = sorted(enumerate(app), key=lambda item: (item[1][0], f"c{item[0]}"))  # by start, then check id
    for (_, (a, b)), line in zip(ordered, section.outages, strict=True):
        mine = _bits([(a, b)])
        inside = mine & down_bits
        unk = mine & ~down_bits & unknown_bits
        answered = mine & ~down_bits & ~unknown_bits
        assert (line.inside_connectivity_outage_seconds, line.connectivity_unknown_seconds,
                line.ports_answered_seconds) == (inside.bit_count(), unk.bit_count(), answered.bit_count())
        assert line.seconds_in_month == mine.bit_count()
        if answered == mine:
            assert line.classification == "customer_fault evidence"
        elif inside == mine:
            assert line.classification == "inside connectivity outage"
    every = _bits(app)
    assert section.outage_seconds == every.bit_count()
    assert (section.ports_answered_seconds + section.inside_connectivity_outage_seconds
            + section.connectivity_unknown_seconds) == section.outage_seconds
