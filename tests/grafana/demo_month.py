"""A demo month of every metric family in docs/metrics.md, as tests/promdata.Series, for the dashboard tests.

October 2026 (UTC) sampled every 5 minutes, as a Prometheus scraping `threenines serve` every 5 minutes would
store it. The story the dashboards must be able to tell, all of it ending at END ("now"):

- acme (ams1, two ports, A/B power): a 50-minute outage on port-a on the 7th (the month's budget is 44.64 min:
  the month is lost), an outage inside agreed maintenance on the 14th, power maintenance open now, and port-b
  determined down 5 minutes before END with no dispatch yet (notification "pending").
- globex (ams1, one port, A/B power): port-1 down since 25 minutes before END, dispatch audited 3 minutes after
  determination; an outage on the 12th notified 1100 s late (deadline missed); power unknown for 2 h on the 20th;
  both outlets switched off 15 minutes before END inside agreed power maintenance (notification not owed).
- initech (fra1, one port, single feed on pdu-b): port-1 determined down 40 minutes before END and nobody
  notified (notification "OVERDUE"); its power is UNKNOWN now because pdu-b stopped answering SNMP 30 minutes
  before END.
- ups-b on battery for the last 20 minutes (runtime left falling from 1800 s), pdu-a phase L2 at 85% of 16 A.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.promdata import Series

START = 1790812800  # 2026-10-01T00:00:00Z
STEP = 300
END = START + 31 * 86400 - 2 * 3600  # 2026-10-31T22:00:00Z: "now" for every instant query
TIMES = range(START, END + 1, STEP)
SCRAPE = {"job": "threenines", "instance": "127.0.0.1:9839"}
DAY = 86400
MINUTE = 60


def at(day: int, hour: int, minute: int = 0) -> int:
    """Unix time of 2026-10-<day> hour:minute UTC."""
    return START + (day - 1) * DAY + hour * 3600 + minute * MINUTE


@dataclass(frozen=True)
class Interval:
    start: int
    end: int  # exclusive; END + STEP for "still open"

    def __contains__(self, t: int) -> bool:
        return self.start <= t < self.end


OPEN = END + STEP


@dataclass
class Target:
    """One contract target: its failed-probe runs (down) and its evidence gaps (unknown)."""

    customer: str
    service: str
    name: str
    down: list[Interval] = field(default_factory=list)
    unknown: list[Interval] = field(default_factory=list)


def _determined(run: Interval) -> int:
    # threshold 2 at a 5-minute interval: the second failed probe, one interval after the first, determines.
    return run.start + STEP


def _outage_seconds(runs: list[Interval], t: int) -> float:
    """The contract counter at t: a run counts only once determined, then retroactively from its first probe."""
    total = 0.0
    for run in runs:
        if t >= _determined(run) and run.end > _determined(run):
            total += min(t, run.end) - run.start
    return total


def _gap_seconds(gaps: list[Interval], t: int) -> float:
    return float(sum(max(0, min(t, gap.end) - gap.start) for gap in gaps if t > gap.start))


def _state(target_down: list[Interval], target_unknown: list[Interval], t: int) -> tuple[int, int, int, int]:
    """(up, known, determined_ts, start_ts) at t."""
    for run in target_down:
        if t in run and t >= _determined(run):
            return 0, 1, _determined(run), run.start
    known = 0 if any(t in gap for gap in target_unknown) else 1
    return 1, known, 0, 0


TARGETS = [
    Target("acme", "connectivity", "port-a", down=[Interval(at(7, 10), at(7, 10, 50)), Interval(at(14, 2, 30),
                                                                                              at(14, 3, 5))]),
    Target("acme", "connectivity", "port-b", down=[Interval(END - 10 * MINUTE, OPEN)]),
    Target("acme", "power", "power"),
    Target("globex", "connectivity", "port-1", down=[Interval(at(12, 15, 55), at(12, 16, 40)),
                                                     Interval(END - 25 * MINUTE, OPEN)]),
    Target("globex", "power", "power", down=[Interval(END - 15 * MINUTE, OPEN)],
           unknown=[Interval(at(20, 9), at(20, 11))]),
    Target("initech", "connectivity", "port-1", down=[Interval(END - 45 * MINUTE, OPEN)]),
    Target("initech", "power", "power", unknown=[Interval(END - 30 * MINUTE, OPEN)]),
]
CUSTOMERS = {
    "acme": {"name": "ACME Hosting B.V.", "site": "ams1", "timezone": "Europe/Amsterdam",
             "contacts_version": "2026-10-01"},
    "globex": {"name": "Globex Corporation", "site": "ams1", "timezone": "Europe/Amsterdam", "contacts_version": "3"},
    "initech": {"name": "Initech GmbH", "site": "fra1", "timezone": "Europe/Berlin", "contacts_version": "2026-09-15"},
}
# (customer, service, reason) → windows
EXCLUSIONS = {
    ("acme", "connectivity", "maintenance"): [Interval(at(14, 2), at(14, 4))],
    ("acme", "power", "maintenance"): [Interval(END - 60 * MINUTE, OPEN)],
    ("globex", "connectivity", "maintenance"): [],
    ("globex", "power", "maintenance"): [Interval(END - 30 * MINUTE, OPEN)],
    ("initech", "connectivity", "customer_fault"): [Interval(at(22, 13), at(22, 15))],
}


@dataclass(frozen=True)
class Dispatch:
    """One delivery recorded by the audit webhook for an outage determined at `determined`."""

    customer: str
    service: str
    target: str
    receiver: str
    determined: int
    delay: float

    @property
    def when(self) -> float:
        return self.determined + self.delay


DISPATCHES = [
    Dispatch("acme", "connectivity", "port-a", "acme-email", at(7, 10, 5), 240.0),
    Dispatch("acme", "connectivity", "port-a", "acme-sms", at(7, 10, 5), 250.0),
    Dispatch("globex", "connectivity", "port-1", "globex-email", at(12, 16), 1100.0),
    Dispatch("globex", "connectivity", "port-1", "globex-email", END - 20 * MINUTE, 180.0),
]
DEADLINE = 900.0
DELAY_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, math.inf)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, math.inf)
UPS = ("ups-a", "ups-b")
PDUS = ("pdu-a", "pdu-b")
ON_BATTERY = Interval(END - 20 * MINUTE, OPEN)
PDU_B_UNREACHABLE = Interval(END - 30 * MINUTE, OPEN)
# outlet → customer (A/B feeds for acme and globex; initech has one feed, on pdu-b)
# Both of globex's outlets switched off for its agreed power maintenance.
OUTLETS_OFF = {"globex": Interval(END - 15 * MINUTE, OPEN)}
OUTLETS = {("pdu-a", "1"): "acme", ("pdu-b", "1"): "acme", ("pdu-a", "2"): "globex", ("pdu-b", "2"): "globex",
           ("pdu-b", "3"): "initech"}


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _series(name: str, labels: dict[str, str], value: Callable[[int], float | None], kind: str = "gauge"
            ) -> Series:
    samples = [(t, v) for t in TIMES if (v := value(t)) is not None]
    return Series(name, {**labels, **SCRAPE}, samples, kind)


def _counts(events: list[float]) -> list[float]:
    """How many of events happened at or before each sample time (one sweep, events in any order)."""
    ordered = sorted(events)
    counts, seen = [], 0
    for t in TIMES:
        while seen < len(ordered) and ordered[seen] <= t:
            seen += 1
        counts.append(float(seen))
    return counts


def _from_list(values: list[float]) -> Callable[[int], float]:
    return lambda t: values[(t - START) // STEP]


def _histogram(name: str, labels: dict[str, str], observations: list[tuple[int, float]],
               buckets: tuple[float, ...]) -> Iterator[Series]:
    for bound in buckets:
        counts = _counts([when for when, value in observations if value <= bound])
        yield _series(f"{name}_bucket", {**labels, "le": _le(bound)}, _from_list(counts), "counter")
    running, total, sums = sorted(observations), 0.0, []
    index = 0
    for t in TIMES:
        while index < len(running) and running[index][0] <= t:
            total += running[index][1]
            index += 1
        sums.append(total)
    yield _series(f"{name}_sum", labels, _from_list(sums), "counter")
    yield _series(f"{name}_count", labels, _from_list(_counts([when for when, _ in observations])), "counter")


def _contract() -> Iterator[Series]:
    for target in TARGETS:
        labels = {"customer": target.customer, "service": target.service, "target": target.name}
        yield _series("threenines_service_up", labels, lambda t, x=target: _state(x.down, x.unknown, t)[0])
        yield _series("threenines_service_known", labels, lambda t, x=target: _state(x.down, x.unknown, t)[1])
        yield _series("threenines_service_determined_timestamp_seconds", labels,
                      lambda t, x=target: _state(x.down, x.unknown, t)[2])
        yield _series("threenines_service_outage_start_timestamp_seconds", labels,
                      lambda t, x=target: _state(x.down, x.unknown, t)[3])
        yield _series("threenines_service_outage_seconds_total", labels,
                      lambda t, x=target: _outage_seconds(x.down, t), "counter")
        yield _series("threenines_service_unknown_seconds_total", labels,
                      lambda t, x=target: _gap_seconds(x.unknown, t), "counter")
    services = sorted({(t.customer, t.service) for t in TARGETS})
    for customer, service in services:
        members = [t for t in TARGETS if (t.customer, t.service) == (customer, service)]
        down = [run for t in members for run in t.down]
        unknown = [gap for t in members for gap in t.unknown]
        labels = {"customer": customer, "service": service}

        def up(t: int, down: list[Interval] = down, unknown: list[Interval] = unknown) -> int:
            return _state(down, unknown, t)[0]

        def known(t: int, down: list[Interval] = down, unknown: list[Interval] = unknown) -> int:
            return _state(down, unknown, t)[1]

        yield _series("threenines_customer_service_up", labels, up)
        yield _series("threenines_customer_service_known", labels, known)
        yield _series("threenines_customer_service_outage_seconds_total", labels,
                      lambda t, d=down: _outage_seconds(d, t), "counter")
        yield _series("threenines_customer_service_unknown_seconds_total", labels,
                      lambda t, u=unknown: _gap_seconds(u, t), "counter")
        yield _series("threenines_customer_objective_ratio", labels, lambda t: 0.999)
    for (customer, service, reason), windows in EXCLUSIONS.items():
        yield _series("threenines_customer_service_excluded",
                      {"customer": customer, "service": service, "reason": reason},
                      lambda t, w=windows: 1 if any(t in window for window in w) else 0)


def _metadata() -> Iterator[Series]:
    for customer, info in CUSTOMERS.items():
        yield _series("threenines_customer_info", {"customer": customer, **info}, lambda t: 1)
        yield _series("threenines_customer_notification_deadline_seconds", {"customer": customer},
                      lambda t: DEADLINE)
    for number, target in enumerate(t for t in TARGETS if t.service == "connectivity"):
        yield _series("threenines_port_info", {"customer": target.customer, "target": target.name,
                                               "address": f"192.0.2.{10 + number}"}, lambda t: 1)


def _probes(rng: random.Random) -> Iterator[Series]:
    for target in (t for t in TARGETS if t.service == "connectivity"):
        labels = {"customer": target.customer, "target": target.name}

        def failed(t: int, x: Target = target) -> bool:
            return any(t in run for run in x.down)

        yield _series("threenines_probe_total", labels, lambda t: float((t - START) // STEP + 1), "counter")
        yield _series("threenines_probe_failures_total", labels,
                      _from_list(_counts([t for t in TIMES if failed(t)])), "counter")
        send_failed = at(20, 3) if target.customer == "globex" else None
        yield _series("threenines_probe_errors_total", {**labels, "reason": "send_failed"},
                      lambda t, s=send_failed: float(s is not None and t >= s), "counter")
        rtts = {t: 0.0008 + rng.random() * 0.0006 for t in TIMES}
        yield _series("threenines_probe_rtt_seconds", labels, lambda t, f=failed, r=rtts: None if f(t) else r[t])
        yield _series("threenines_probe_loss_ratio", labels, lambda t, f=failed: 1.0 if f(t) else 0.0)
        yield _series("threenines_probe_last_timestamp_seconds", labels, lambda t: float(t))


def _power(rng: random.Random) -> Iterator[Series]:
    for ups in UPS:
        labels = {"device": ups}

        def source(t: int, ups: str = ups) -> str:
            return "battery" if ups == "ups-b" and t in ON_BATTERY else "normal"

        for state in ("normal", "battery", "bypass", "none", "other"):
            yield _series("threenines_ups_output_source", {**labels, "source": state},
                          lambda t, s=state, f=source: 1 if f(t) == s else 0)
        yield _series("threenines_ups_battery_charge_ratio", labels,
                      lambda t, f=source: 1.0 - (t - ON_BATTERY.start) / 7200 if f(t) == "battery" else 1.0)
        yield _series("threenines_ups_battery_runtime_seconds", labels,
                      lambda t, f=source: 1800.0 - (t - ON_BATTERY.start) / 4 if f(t) == "battery" else 2400.0)
        line = {**labels, "phase": "1"}  # single-phase UPSes: their one line
        yield _series("threenines_ups_input_voltage_volts", line,
                      lambda t, f=source: 0.0 if f(t) == "battery" else 229.0 + rng.random() * 3)
        yield _series("threenines_ups_output_load_ratio", line, lambda t: 0.42 + rng.random() * 0.05)
        yield _series("threenines_ups_output_voltage_volts", line, lambda t: 230.0 + rng.random())
        # ups-b's on-battery trap made the exporter poll it and its PDU at once.
        yield _series("threenines_power_triggered_polls_total", {**labels, "trigger": "trap"},
                      lambda t, u=ups: float(u == "ups-b" and t >= ON_BATTERY.start), "counter")
    # No blackout this month: the blackout rule never held a customer down (the families exist, empty).
    evidence = {"customer": "acme", "device": "ups-b", "evidence": "low_battery"}
    yield _series("threenines_power_inferred_down", evidence, lambda t: None)
    yield _series("threenines_power_inferred_down_since_timestamp_seconds", evidence, lambda t: None)
    for pdu in PDUS:
        reachable: Callable[[int], bool] = (
            (lambda t: t not in PDU_B_UNREACHABLE) if pdu == "pdu-b" else (lambda t: True))
        for phase in ("L1", "L2", "L3"):
            labels = {"device": pdu, "phase": phase}
            base = 13.6 if (pdu, phase) == ("pdu-a", "L2") else 6.0
            yield _series("threenines_pdu_phase_current_amperes", labels,
                          lambda t, b=base, r=reachable: b + rng.random() * 0.2 if r(t) else None)
            yield _series("threenines_pdu_phase_voltage_volts", labels,
                          lambda t, r=reachable: 230.0 + rng.random() * 2 if r(t) else None)
        for (device, outlet), customer in OUTLETS.items():
            if device != pdu:
                continue
            labels = {"device": pdu, "outlet": outlet, "customer": customer}
            rated = 350.0 + 100 * int(outlet)
            off = OUTLETS_OFF.get(customer)

            def watts(t: int, rated: float = rated, off: Interval | None = off) -> float:
                return 0.0 if off and t in off else rated

            def joules(t: int, rated: float = rated, off: Interval | None = off) -> float:
                return rated * (min(t, off.start) if off else t) - rated * START

            yield _series("threenines_pdu_outlet_on", labels,
                          lambda t, r=reachable, w=watts: (1 if w(t) else 0) if r(t) else None)
            yield _series("threenines_pdu_outlet_current_amperes", labels,
                          lambda t, w=watts, r=reachable: w(t) / 230 if r(t) else None)
            yield _series("threenines_pdu_outlet_power_watts", labels,
                          lambda t, w=watts, r=reachable: w(t) if r(t) else None)
            yield _series("threenines_pdu_outlet_energy_joules_total", labels,
                          lambda t, j=joules, r=reachable: j(t) if r(t) else None, "counter")
    for device in (*UPS, *PDUS):
        down = PDU_B_UNREACHABLE if device == "pdu-b" else None
        labels = {"device": device}
        yield _series("threenines_device_up", labels, lambda t, d=down: 0 if d and t in d else 1)
        yield _series("threenines_device_poll_duration_seconds", labels,
                      lambda t, d=down: 6.0 if d and t in d else 0.05 + rng.random() * 0.05)
        yield _series("threenines_device_last_success_timestamp_seconds", labels,
                      lambda t, d=down: float(min(t, d.start - STEP) if d and t in d else t))
        for reason in ("timeout", "auth"):
            def errors(t: int, d: Interval | None = down, reason: str = reason, device: str = device) -> float:
                if reason == "timeout" and d:
                    return float(max(0, (t - d.start) // STEP + 1) if t >= d.start else 0)
                return float(reason == "auth" and device == "ups-a" and t >= at(3, 8))
            yield _series("threenines_device_poll_errors_total", {**labels, "reason": reason}, errors, "counter")


def _notifications() -> Iterator[Series]:
    # The first dispatch of an outage is the notification: one histogram observation, one possible miss.
    first: dict[tuple[str, str, str, int], Dispatch] = {}
    for dispatch in sorted(DISPATCHES, key=lambda d: d.when):
        first.setdefault((dispatch.customer, dispatch.service, dispatch.target, dispatch.determined), dispatch)
    for customer in CUSTOMERS:
        observations = [(round(d.when), d.delay) for d in first.values() if d.customer == customer]
        yield from _histogram("threenines_notification_delay_seconds", {"customer": customer}, observations,
                              DELAY_BUCKETS)
        # A miss is a fact when its deadline passes (late dispatch or none at all), not when a dispatch comes.
        missed = _missed_deadlines(customer, first)
        yield _series("threenines_notification_deadline_missed_total", {"customer": customer},
                      _from_list(_counts([deadline for _, deadline in missed])), "counter")
        for target_name in sorted({name for name, _ in missed}):
            instants = sorted(deadline for name, deadline in missed if name == target_name)

            def latest(t: int, instants: list[float] = instants) -> float | None:
                passed = [deadline for deadline in instants if deadline <= t]
                return passed[-1] if passed else None

            yield _series("threenines_notification_deadline_missed_timestamp_seconds",
                          {"customer": customer, "service": "connectivity", "target": target_name}, latest)
    receivers = sorted({(d.customer, d.receiver) for d in DISPATCHES} | {("initech", "initech-email")})
    for customer, receiver in receivers:
        times = [d.when for d in DISPATCHES if (d.customer, d.receiver) == (customer, receiver)]
        yield _series("threenines_notification_dispatches_total", {"customer": customer, "receiver": receiver},
                      _from_list(_counts(times)), "counter")
    for target in TARGETS:
        audited = sorted((d.when, d.determined) for d in DISPATCHES
                         if (d.customer, d.service, d.target) == (target.customer, target.service, target.name))

        def last_audited(t: int, audited: list[tuple[float, int]] = audited) -> float:
            return float(max((determined for when, determined in audited if when <= t), default=0))

        yield _series("threenines_notification_last_dispatch_determined_timestamp_seconds",
                      {"customer": target.customer, "service": target.service, "target": target.name}, last_audited)
    yield from _deliveries(first)


def _deliveries(first: dict[tuple[str, str, str, int], Dispatch]) -> Iterator[Series]:
    # The exporter delivers: each dispatch is a delivery a few seconds later, except globex's e-mail relay,
    # which refused STARTTLS-less delivery for the first 20 minutes of its outage on day 12 (4 failed attempts).
    accepted_after = 3.0
    for customer in CUSTOMERS:
        observations = [(round(d.when + accepted_after), d.delay + accepted_after)
                        for d in first.values() if d.customer == customer]
        yield from _histogram("threenines_notification_delivery_delay_seconds", {"customer": customer},
                              observations, DELAY_BUCKETS)
    channels = sorted({(d.customer, d.receiver.split("-")[-1]) for d in DISPATCHES})
    failed_at = [at(12, 16) + offset for offset in (10, 30, 70, 150)]
    for customer, channel in channels:
        times = [d.when + accepted_after for d in DISPATCHES
                 if (d.customer, d.receiver.split("-")[-1]) == (customer, channel)]
        labels = {"customer": customer, "channel": channel}
        yield _series("threenines_notification_deliveries_total", labels, _from_list(_counts(times)), "counter")
        failing = (customer, channel) == ("globex", "email")
        yield _series("threenines_notification_delivery_failures_total", {**labels, "reason": "tls_required"},
                      _from_list(_counts(failed_at if failing else [])), "counter")
        yield _series("threenines_notification_delivery_pending", labels,
                      lambda t, failing=failing: 1.0 if failing and at(12, 16) <= t < at(12, 16) + 1200 else 0.0)
    for target in TARGETS:
        delivered = sorted((d.when + accepted_after, d.determined) for d in DISPATCHES
                           if (d.customer, d.service, d.target) == (target.customer, target.service, target.name))

        def last_delivered(t: int, delivered: list[tuple[float, int]] = delivered) -> float:
            return float(max((determined for when, determined in delivered if when <= t), default=0))

        yield _series("threenines_notification_last_delivery_determined_timestamp_seconds",
                      {"customer": target.customer, "service": target.service, "target": target.name},
                      last_delivered)
    posts = [d.when for d in DISPATCHES]
    for endpoint, code in (("deliver", "200"), ("deliver", "401"), ("audit", "200")):
        events = posts if code == "200" and endpoint == "deliver" else []
        yield _series("threenines_notification_webhook_requests_total", {"endpoint": endpoint, "code": code},
                      _from_list(_counts(events)), "counter")


def _rejected() -> Iterator[Series]:
    # No delivery named a customer or target outside the inventory this month.
    for reason in ("unknown_customer", "unknown_target", "wrong_receiver"):
        yield _series("threenines_notification_rejected_alerts_total", {"reason": reason}, lambda t: 0.0, "counter")


def _missed_deadlines(customer: str, first: dict[tuple[str, str, str, int], Dispatch]
                      ) -> list[tuple[str, float]]:
    """(target, deadline instant) of each connectivity outage of customer notified late or never, by END."""
    missed = []
    for target in TARGETS:
        if target.customer != customer or target.service != "connectivity":
            continue
        for run in target.down:
            determined = _determined(run)
            if run.end <= determined or determined + DEADLINE > END:
                continue  # never determined, or its deadline has not passed yet
            dispatch = first.get((customer, target.service, target.name, determined))
            if dispatch is None or dispatch.delay > DEADLINE:
                missed.append((target.name, determined + DEADLINE))
    return missed


def _health(rng: random.Random) -> Iterator[Series]:
    # The process started at the beginning of the month and never restarted.
    yield _series("threenines_exporter_accounting_start_timestamp_seconds", {}, lambda t: float(START))
    yield _series("threenines_build_info", {"version": "0.1.0"}, lambda t: 1)
    # One exporter, no exclusions policy set: the contract's default merge (replicas are vantage_day.py's).
    yield _series("threenines_merge_policy_info", {"merge": "all"}, lambda t: 1)
    yield _series("threenines_config_last_reload_successful", {}, lambda t: 1)
    yield _series("threenines_config_last_reload_success_timestamp_seconds", {}, lambda t: float(START + 3600))
    probes_per_step = sum(1 for t in TARGETS if t.service == "connectivity")
    lags = [(t, rng.random() * 0.08 + (0.6 if t in Interval(at(20, 9), at(20, 10)) else 0.0)) for t in TIMES
            for _ in range(probes_per_step)]
    yield from _histogram("threenines_probe_schedule_lag_seconds", {}, lags, LAG_BUCKETS)
    yield _series("threenines_probes_in_flight", {}, lambda t: float(rng.randint(0, probes_per_step)))
    yield _series("threenines_probe_unmatched_replies_total", {},
                  lambda t: float((t - START) // (6 * 3600)), "counter")  # a late reply every few hours
    # One publish failed on the 20th (the same incident as the outage ledger's write error).
    for stage in ("contract", "exclusions", "publish", "loop"):
        yield _series("threenines_tick_errors_total", {"stage": stage},
                      lambda t, s=stage: float(s == "publish" and t >= at(20, 9, 30)), "counter")
    # A VM restored on the 12th came up an hour behind; NTP set it right ten minutes later (two steps, both seen).
    for direction, when in (("backward", at(12, 3, 10)), ("forward", at(12, 3, 20))):
        yield _series("threenines_clock_steps_total", {"direction": direction},
                      lambda t, w=when: float(t >= w), "counter")
    yield _series("threenines_metrics_render_seconds", {}, lambda t: 0.002 + rng.random() * 0.001)
    writes = [when for target in TARGETS for run in target.down for when in (run.start, run.end) if when <= END]
    for ledger, result in (("outage", "ok"), ("outage", "error"), ("audit", "ok"), ("audit", "error")):
        if ledger == "outage":
            events = writes if result == "ok" else [at(20, 9, 30)]
        else:
            events = [d.when for d in DISPATCHES] if result == "ok" else []
        yield _series("threenines_ledger_writes_total", {"ledger": ledger, "result": result},
                      lambda t, e=events: float(sum(1 for when in e if when <= t)), "counter")
    # The same incident: from 09:30 to 09:45 on the 20th the disk refused the outage ledger's writes; the failed
    # event and the heartbeat (one a 15 s tick) were kept in memory and landed when it took them again.
    refused = Interval(at(20, 9, 30), at(20, 9, 45))

    def ticks(since: float, until: float) -> float:
        return float(max(0.0, until - since) // 15)

    recovery: dict[tuple[str, str], Callable[[int], float]] = {
        ("target", "ok"): lambda t: float(probes_per_step),
        ("heartbeat", "ok"): lambda t: ticks(START, min(t, refused.start)) + ticks(refused.end, t),
        ("heartbeat", "error"): lambda t: ticks(refused.start, min(t, refused.end)),
    }
    for kind in ("target", "checkpoint", "heartbeat"):
        for result in ("ok", "error"):
            yield _series("threenines_ledger_recovery_writes_total",
                          {"ledger": "outage", "kind": kind, "result": result},
                          recovery.get((kind, result), lambda t: 0.0), "counter")
    for kind in ("record", "target", "checkpoint", "heartbeat"):
        yield _series("threenines_ledger_pending_writes", {"ledger": "outage", "kind": kind},
                      lambda t, k=kind: float(k in ("record", "heartbeat") and t in refused))
    # Prometheus' own series for the scrape of the exporter.
    yield Series("up", SCRAPE, [(t, 1.0) for t in TIMES])
    yield Series("scrape_duration_seconds", SCRAPE, [(t, 0.004 + rng.random() * 0.002) for t in TIMES])


@dataclass(frozen=True)
class AppCheck:
    """One application check of the demo month: its contract target (service="application") and its own
    measurements. `failures` are (reason, instants); `cert_days` is the certificate's expiry in days after END."""

    target: Target
    kind: str
    failures: tuple[tuple[str, tuple[int, ...]], ...] = ()
    cert_days: float | None = None
    stalled_at: int | None = None  # the last check completed here (no check could be made since)


def _every_step(interval: Interval) -> tuple[int, ...]:
    return tuple(t for t in TIMES if t in interval)


_WWW_FAILED = Interval(at(9, 14), at(9, 14, 20))
_FILES_DOWN = Interval(END - 15 * MINUTE, OPEN)
_INITECH_LOCAL = Interval(END - 30 * MINUTE, OPEN)
# The customers' own applications (docs/design.md "Applications"). acme (not billable): www failed 4 checks in a
# row on the 9th (a 20-minute outage, notified, not billed); mail failed one check on the 15th (below the
# threshold: no outage) and its certificate expires in 10 days. globex (applications_billable): its FTP server
# stopped answering 15 minutes before END (open outage, billed). initech: its web check could not be made for
# the last 30 minutes (reason local: unknown, not down).
APP_CHECKS = (
    AppCheck(Target("acme", "application", "www", down=[_WWW_FAILED]), "http",
             (("bad_status", _every_step(_WWW_FAILED)),), cert_days=40),
    AppCheck(Target("acme", "application", "mail"), "smtp", (("timeout", (at(15, 3),)),), cert_days=10),
    AppCheck(Target("globex", "application", "files", down=[_FILES_DOWN]), "ftp",
             (("timeout", _every_step(_FILES_DOWN)),)),
    AppCheck(Target("initech", "application", "www", unknown=[_INITECH_LOCAL]), "http",
             (("local", _every_step(_INITECH_LOCAL)),), cert_days=90, stalled_at=_INITECH_LOCAL.start - STEP),
)
APPLICATIONS_BILLABLE = {"globex"}


def _applications(rng: random.Random) -> Iterator[Series]:
    """The application checks above: their contract series (as _contract writes them for the billed services,
    objective only where billable) and their own families (docs/metrics.md "Application checks")."""
    for check in APP_CHECKS:
        x = check.target
        labels = {"customer": x.customer, "service": "application", "target": x.name}
        yield _series("threenines_service_up", labels, lambda t, x=x: _state(x.down, x.unknown, t)[0])
        yield _series("threenines_service_known", labels, lambda t, x=x: _state(x.down, x.unknown, t)[1])
        yield _series("threenines_service_determined_timestamp_seconds", labels,
                      lambda t, x=x: _state(x.down, x.unknown, t)[2])
        yield _series("threenines_service_outage_start_timestamp_seconds", labels,
                      lambda t, x=x: _state(x.down, x.unknown, t)[3])
        yield _series("threenines_service_outage_seconds_total", labels, lambda t, x=x: _outage_seconds(x.down, t),
                      "counter")
        yield _series("threenines_service_unknown_seconds_total", labels, lambda t, x=x: _gap_seconds(x.unknown, t),
                      "counter")
        own = {"customer": x.customer, "target": x.name}
        yield _series("threenines_application_info", {**own, "kind": check.kind}, lambda t: 1.0)
        last = check.stalled_at or END
        yield _series("threenines_application_checks_total", own,
                      lambda t, last=last: float((min(t, last) - START) // STEP + 1), "counter")
        for reason, instants in check.failures:
            yield _series("threenines_application_check_failures_total", {**own, "reason": reason},
                          _from_list(_counts(list(instants))), "counter")
        durations = {t: 0.02 + rng.random() * 0.05 for t in TIMES}
        yield _series("threenines_application_check_duration_seconds", own,
                      lambda t, d=durations, last=last: d[min(t, last)])
        yield _series("threenines_application_check_last_timestamp_seconds", own,
                      lambda t, last=last: float(min(t, last)))
        if check.cert_days is not None:
            yield _series("threenines_application_certificate_expiry_timestamp_seconds", own,
                          lambda t, days=check.cert_days: float(END + days * DAY))
    for customer in sorted({check.target.customer for check in APP_CHECKS}):
        members = [check.target for check in APP_CHECKS if check.target.customer == customer]
        down = [run for x in members for run in x.down]
        unknown = [gap for x in members for gap in x.unknown]
        labels = {"customer": customer, "service": "application"}
        yield _series("threenines_customer_service_up", labels, lambda t, d=down, u=unknown: _state(d, u, t)[0])
        yield _series("threenines_customer_service_known", labels, lambda t, d=down, u=unknown: _state(d, u, t)[1])
        yield _series("threenines_customer_service_outage_seconds_total", labels,
                      lambda t, d=down: _outage_seconds(d, t), "counter")
        yield _series("threenines_customer_service_unknown_seconds_total", labels,
                      lambda t, u=unknown: _gap_seconds(u, t), "counter")
        if customer in APPLICATIONS_BILLABLE:
            yield _series("threenines_customer_objective_ratio", labels, lambda t: 0.999)


def _vantage_health() -> Iterator[Series]:
    """ams1's two canaries: the exporter's own uplink was cut for 10 minutes on the 3rd (blind; the customers'
    failures meanwhile were no evidence), fra1 has none."""
    cut = Interval(at(3, 4), at(3, 4, 10))
    blind = [1.0 if cut.start <= t < cut.end else 0.0 for t in TIMES]
    site = {"site": "ams1"}
    yield _series("threenines_vantage_blind", site, _from_list(blind))
    for canary in ("router", "ref"):
        yield _series("threenines_canary_up", {**site, "canary": canary}, lambda t, b=blind: 1.0 - _from_list(b)(t))
    yield _series("threenines_vantage_blind_failures_total", site,
                  _from_list(_counts([cut.start + 60, cut.start + 300])), "counter")


def demo_month(seed: int = 7) -> list[Series]:
    """Every metric family of docs/metrics.md (plus Prometheus' up and scrape_duration_seconds) for the month."""
    rng = random.Random(seed)
    return [*_contract(), *_metadata(), *_probes(rng), *_power(rng), *_notifications(), *_rejected(), *_health(rng),
            *_applications(rng), *_vantage_health()]
