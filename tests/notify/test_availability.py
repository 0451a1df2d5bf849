"""The month's availability so far in a customer message: (elapsed − outage) / elapsed, in the contract's month.

The outages come from the real contract engine (probe results in, events out) and the real outage ledger (the
restart path); every expected figure is worked out by hand from the contract's words in the comments:
- the month runs from local midnight on the 1st in the contract zone (docs/report.md "Months");
- an outage runs from the first failed probe to the first successful one (docs/design.md §1);
- evidence older than 1.5 × interval is unknown, and unknown is not outage;
- a second with two ports down counts once (the customer/service union);
- the figure is rounded down to 0.001 %, so it never overstates.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from threenines.config.inventory import TargetKey
from threenines.contract.engine import ContractEngine, TargetSpec
from threenines.ledgers.outages import OutageLedger
from threenines.notify.availability import MonthOutages, MonthSoFar, month_so_far, month_start
from threenines.notify.message import Notice, render

AMS, SHA = "Europe/Amsterdam", "Asia/Shanghai"
INTERVAL = 60.0  # probes every minute, threshold 2: the horizon is 90 s


def local(zone: str, *fields: int) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def engine(*targets: str, ledger: OutageLedger | None = None, start: float,
           months: MonthOutages | None = None) -> tuple[ContractEngine, MonthOutages]:
    months = months if months is not None else MonthOutages()
    e = ContractEngine(ledger, on_event=months.observe)
    e.configure([TargetSpec(TargetKey("acme", "connectivity", t), 2, INTERVAL * 1.5) for t in targets], start)
    return e, months


def probe(e: ContractEngine, target: str, results: list[tuple[float, bool]]) -> None:
    for at, ok in results:
        e.tick(at)
        e.observe(TargetKey("acme", "connectivity", target), at, ok)
        e.tick(at)


def every_minute(start: float, end: float, ok: bool) -> list[tuple[float, bool]]:
    return [(start + i * INTERVAL, ok) for i in range(int((end - start) // INTERVAL))]


def test_a_30_day_month_two_hours_in_with_a_three_and_a_half_minute_outage() -> None:
    # November 2026 has 30 days; in Amsterdam it starts at 00:00 CET. Probes answer from midnight, fail at 01:00,
    # 01:01, 01:02 and 01:03 (determined at 01:01, the second consecutive failure), answer again at 01:03:30.
    # Outage [01:00:00, 01:03:30) = 210 s. As of 02:00: elapsed 2 h = 7200 s; (7200 − 210) / 7200 = 0.970833…
    # → 97.083 %.
    t = lambda h, m, s=0: local(AMS, 2026, 11, 1, h, m, s)  # noqa: E731
    e, months = engine("uplink", start=t(0, 0))
    months.rebuild([], [])
    probe(e, "uplink", every_minute(t(0, 0), t(1, 0), True) + every_minute(t(1, 0), t(1, 4), False)
          + [(t(1, 3, 30), True)] + every_minute(t(1, 4), t(2, 0), True))
    month = months("acme", "connectivity", t(2, 0), AMS)
    assert month is not None
    assert (month.start, month.elapsed_seconds, month.outage_seconds) == (t(0, 0), 7200.0, 210.0)
    assert month.percent_text() == "97.083"
    # As of the determination (the firing message): [01:00, 01:01) of 1 h 1 min elapsed: 3600/3660 → 98.360 %.
    firing = months("acme", "connectivity", t(1, 1), AMS)
    assert firing is not None and (firing.outage_seconds, firing.percent_text()) == (60.0, "98.360")


def test_time_without_evidence_inside_an_outage_is_not_outage_and_two_ports_down_count_once() -> None:
    # Port a fails at 01:00 and 01:01 (determined), then no probe until 01:04, a failure, and an answer at 01:06.
    # Evidence is 90 s old at 01:02:30: [01:02:30, 01:04) is unknown, not outage. Port a's outage pieces:
    # [01:00, 01:02:30) + [01:04, 01:06) = 150 + 120 = 270 s.
    # Port b is down [01:05, 01:10) (fails 01:05, 01:06, 01:07, 01:08, 01:09, answers 01:10): 300 s, of which
    # [01:05, 01:06) overlaps port a's outage. The service's union: 270 + 300 − 60 = 510 s.
    # As of 02:00 (7200 s elapsed): 6690 / 7200 = 0.929166… → 92.916 % (rounded down; 92.917 rounded).
    t = lambda h, m, s=0: local(AMS, 2026, 11, 1, h, m, s)  # noqa: E731
    e, months = engine("a", "b", start=t(0, 0))
    months.rebuild([], [])
    for minute in range(120):
        at = t(0, 0) + minute * INTERVAL
        if minute in (60, 61, 64):
            probe(e, "a", [(at, False)])
        elif minute not in (62, 63, 65):
            probe(e, "a", [(at, True)])
        probe(e, "b", [(at, not 65 <= minute <= 69)])
        if minute == 65:
            probe(e, "a", [(at, False)])  # still down at 01:05; the answer comes at 01:06
    month = months("acme", "connectivity", t(2, 0), AMS)
    assert month is not None and month.outage_seconds == 510.0
    assert month.percent_text() == "92.916"


def test_the_first_message_of_a_month_in_a_zone_ahead_of_utc_after_outages_in_the_previous_month() -> None:
    # Asia/Shanghai is UTC+08:00: December 2026 starts at 2026-11-30 16:00 UTC. Outages:
    #   [Nov 30 23:00, 23:30) CST — November's only (in UTC it is 15:00–15:30, also November);
    #   [Nov 30 23:50, Dec 1 00:10) CST — its last 600 s are December's;
    #   first failed Dec 1 01:55 CST, determined 01:56, open.
    # The resolved message of the second (as of its end, 00:10): 600 s elapsed, all outage → 0.000 %.
    # The firing message of the third (as of its determination, 01:56): elapsed 1 h 56 min = 6960 s, outage
    # 600 + 60 = 660 s: 6300 / 6960 = 0.905172… → 90.517 %. (A UTC month would say November, 29.7 days in.)
    t = lambda d, h, m: local(SHA, 2026, 11 if d == 30 else 12, d, h, m)  # noqa: E731
    e, months = engine("uplink", start=t(30, 22, 0))
    months.rebuild([], [])

    def run(start: float, end: float, ok: bool) -> None:
        probe(e, "uplink", every_minute(start, end, ok))

    run(t(30, 22, 0), t(30, 23, 0), True)
    run(t(30, 23, 0), t(30, 23, 30), False)
    run(t(30, 23, 30), t(30, 23, 50), True)
    run(t(30, 23, 50), t(1, 0, 10), False)
    run(t(1, 0, 10), t(1, 1, 55), True)
    run(t(1, 1, 55), t(1, 1, 57), False)
    assert month_start(t(1, 0, 10), SHA) == datetime(2026, 11, 30, 16, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    restored = months("acme", "connectivity", t(1, 0, 10), SHA)
    assert restored is not None and (restored.elapsed_seconds, restored.outage_seconds) == (600.0, 600.0)
    assert restored.percent_text() == "0.000"
    firing = months("acme", "connectivity", t(1, 1, 56), SHA)
    assert firing is not None and (firing.elapsed_seconds, firing.outage_seconds) == (6960.0, 660.0)
    assert firing.percent_text() == "90.517"
    # The same history read in November's last minute (23:59 CST): November's two outages up to then,
    # 1800 + 540 = 2340 s of 29 days 23 h 59 min = 2591940 s: 2589600 / 2591940 = 0.999097… → 99.909 %.
    november = months("acme", "connectivity", t(30, 23, 59), SHA)
    assert november is not None and november.outage_seconds == 2340.0 and november.percent_text() == "99.909"


def test_after_a_restart_the_month_is_rebuilt_from_the_outage_ledger(tmp_path: Path) -> None:
    # The first process sees the outage [01:00, 01:03:30) and stops; a new process's history is the ledger's.
    t = lambda h, m, s=0: local(AMS, 2026, 11, 1, h, m, s)  # noqa: E731
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    e, _ = engine("uplink", ledger=ledger, start=t(0, 0))
    probe(e, "uplink", every_minute(t(0, 0), t(1, 0), True) + every_minute(t(1, 0), t(1, 4), False)
          + [(t(1, 3, 30), True)])
    ledger.close()
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    try:
        months = MonthOutages()
        assert months("acme", "connectivity", t(2, 0), AMS) is None  # not built: no figure, never "100 %"
        months.rebuild(ledger.outages(since=t(2, 0) - MonthOutages.KEEP), ledger.outage_gaps())
    finally:
        ledger.close()
    month = months("acme", "connectivity", t(2, 0), AMS)
    assert month is not None and (month.outage_seconds, month.percent_text()) == (210.0, "97.083")
    assert months("acme", "power", t(2, 0), AMS) == MonthSoFar(t(0, 0), t(2, 0), 0.0)  # no outage: 100 %


def test_month_edges_follow_the_zone_and_its_daylight_saving_time() -> None:
    # October 2026 in Amsterdam starts in summer time (CEST, UTC+02:00) and ends in winter time: 745 h.
    october = local(AMS, 2026, 10, 1, 0, 0)
    assert october == datetime(2026, 9, 30, 22, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert month_start(local(AMS, 2026, 10, 31, 23, 59), AMS) == october
    november = month_start(local(AMS, 2026, 11, 1, 0, 0), AMS)
    assert (november - october) / 3600 == 745
    # Nothing elapsed at midnight: no figure rather than a division by zero or "100 %".
    assert month_so_far([], november, AMS) is None
    assert month_so_far([(november - 60, november + 30)], november + 60, AMS) == MonthSoFar(november, november + 60,
                                                                                            30.0)


@pytest.mark.parametrize(("outage", "elapsed", "text"), [
    (0.0, 7200.0, "100.000"),
    (1.0, 31 * 86400.0, "99.999"),  # one second in a 31-day month: 99.99996…, never shown as 100.000
    (3456.0, 2592000.0, "99.866"),  # 57 min 36 s in a 30-day month: 1 − 3456/2592000 = 0.998666… exactly 99.8666…
    (1244.16, 2592000.0, "99.952"),  # exactly 99.952 % (0.048 % of 30 days), not 99.951 by binary rounding
])
def test_the_percentage_is_rounded_down_to_a_thousandth(outage: float, elapsed: float, text: str) -> None:
    assert MonthSoFar(0.0, elapsed, outage).percent_text() == text


def test_a_notice_without_a_figure_says_nothing_about_the_month_and_old_notices_still_load() -> None:
    facts = ('{"status": "firing", "customer": "acme", "customer_name": "ACME", "service": "connectivity", '
             '"target": "uplink", "address": "192.0.2.1", "timezone": "Europe/Amsterdam", "language": "en", '
             '"determined_at": 1795413900.0, "first_failed_at": 1795413600.0, "ended_at": null, '
             '"contacts_version": "1"}')  # a delivery ledger row written before the figure existed
    notice = Notice.from_json(facts)
    assert notice.month is None
    message = render(notice)
    everything = message.text + message.html + message.sms
    assert not any(word in everything for word in ("Availability", "so far", "%"))
    assert message.document["month_so_far"] is None
    with_month = Notice.from_json(facts[:-1] + ', "month_as_of": 1795413900.0, "month_outage_seconds": 300.0}')
    # 2026-11-23 07:05 CET is 22 d 7 h 5 min = 1926300 s after 1 November 00:00 CET: 1926000 / 1926300 → 99.984
    assert with_month.month is not None and with_month.month.elapsed_seconds == 1926300.0
    assert "Availability:       99.984 % this month so far (provisional)" in render(with_month).text


def test_the_delivery_endpoint_takes_the_figure_only_for_outages_it_determined_and_billed_services(
        tmp_path: Path) -> None:
    # The real audit webhook, delivery ledger and endpoint, with the two histories `threenines serve` wires in, fed
    # the same engine events. Port uplink-a: first failed 01:00, determined 01:01, answered 01:03:30 (Amsterdam,
    # 1 November): firing as of 01:01 → 60 s of 3660 → 98.360 %; resolved as of 01:03:30 → 210 s of 3810 s:
    # 3600 / 3810 = 0.944881… → 94.488 %.
    from tests.audit.test_webhook import alert, payload
    from threenines.alerting.webhook import AuditWebhook
    from threenines.config.inventory_load import parse_inventory_text
    from threenines.ledgers.audit import AuditLedger
    from threenines.ledgers.delivery import DeliveryLedger
    from threenines.notify.endpoint import DeliveryEndpoint, OutageTimes
    from threenines.notify.worker import Notifier

    t = lambda h, m, s=0: local(AMS, 2026, 11, 1, h, m, s)  # noqa: E731
    inv = parse_inventory_text("""
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    contacts: {version: "1", notify: [{webhook: {url: "http://127.0.0.1:9/hook"}}]}
    ports: [{id: uplink-a, address: 192.0.2.10}]
    applications: [{id: www, tcp: {address: "192.0.2.10:80"}}]
""")
    times, months = OutageTimes(), MonthOutages()
    times.rebuild([])
    months.rebuild([], [])
    e = ContractEngine(None, on_event=lambda ev: (times.observe(ev), months.observe(ev)))
    keys = [TargetKey("acme", "connectivity", "uplink-a"), TargetKey("acme", "application", "www")]
    e.configure([TargetSpec(k, 2, INTERVAL * 1.5) for k in keys], t(0, 0))
    for at, ok in every_minute(t(0, 0), t(1, 0), True) + every_minute(t(1, 0), t(1, 4), False) + [(t(1, 3, 30), True)]:
        for key in keys:
            e.tick(at)
            e.observe(key, at, ok)
    audit = AuditWebhook(AuditLedger(tmp_path / "audit.sqlite"), "tok", 1 << 20, inv, clock=lambda: t(1, 5))
    notifier = Notifier(DeliveryLedger(tmp_path / "delivery.sqlite"), {}, inv)
    endpoint = DeliveryEndpoint(audit, notifier, inv, lambda: t(1, 5), times, months)

    def notice(status: str, determined_at: float, target: str = "uplink-a", service: str = "connectivity"
               ) -> Notice:
        a = alert("acme", target, determined_at, status=status, fingerprint=f"{status}{target}{determined_at}")
        a["labels"]["service"] = service
        if status == "resolved":
            a["endsAt"] = "2026-11-01T00:05:00Z"
        status_code, _ = endpoint.handle(payload("customer-acme", a), {"authorization": "Bearer tok"})
        assert status_code == 200
        with sqlite3.connect(tmp_path / "delivery.sqlite") as db:
            [facts] = db.execute("SELECT facts FROM notices WHERE service = ? AND target = ? AND event = ? AND "
                                 "abs(determined_at - ?) < 0.001", (service, target, status, determined_at)
                                 ).fetchone()
        return Notice.from_json(facts)

    firing = notice("firing", t(1, 1)).month
    assert firing is not None and firing.percent_text() == "98.360"
    resolved = notice("resolved", t(1, 1)).month
    assert resolved is not None and (resolved.at, resolved.outage_seconds) == (t(1, 3, 30), 210.0)
    assert resolved.percent_text() == "94.488"
    assert notice("firing", t(1, 2)).month is None  # an outage the engine never determined: no figure
    assert notice("firing", t(1, 1), "www", "application").month is None  # not billed: the statement has no line
