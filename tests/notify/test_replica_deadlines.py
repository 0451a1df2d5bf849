"""The notification deadline over two replica exporters (issue #19), in process: each replica has its own audit and
delivery ledgers, notifier and deadline watch, and the replicas talk through each other's real peer endpoint
handler (JSON, token), as tests/notify/test_peer.py wires them. Time is a fake clock; the contact is an SMS
gateway object that accepts.

The contract owes "notification within 15 minutes of determining unavailability" (here 6 s). With two vantages the
provider determined the outage when the first of them did (T; the other determined at T + 0.5 s): the page
carries T (the rule's `min by`), and so do the expected values here:

* delivered at T + 2 s: notified on time, no miss on either replica (the bug: the replica that determined at
  T + 0.5 watched its own determination, found no delivery under it and recorded `not_notified`);
* not delivered: one miss per outage, at T + 6 s, keyed by T, the same row in both ledgers (a merge of the
  replicas counts it once) — whether the replicas learnt T from each other or from the page;
* a delivery of an earlier outage of the same target, which ended before this replica's run began, is not this
  outage's notification;
* a replica that was down when the outage began determines it long after the peer's determination (which falls
  before its own first failed probe): the peer's delivery under T is still the outage's notification.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from tests.audit.test_webhook import alert, payload
from tests.notify.test_peer import TOKEN, Gateway, Wire
from threenines.alerting.deadlines import KEEP, PEER_RUNS, DeadlineWatch, Run
from threenines.alerting.webhook import AuditWebhook
from threenines.config.inventory import TargetKey
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.machine import OutageEvent
from threenines.ledgers.audit import AuditLedger
from threenines.ledgers.delivery import DeliveryLedger
from threenines.notify.endpoint import DeliveryEndpoint
from threenines.notify.peer import RUN_BATCH, PeerEndpoint, PeerError, _run, _run_document
from threenines.notify.worker import Notifier, drain

T = 1_790_000_000.0  # the earliest determination: replica a's
LATER = T + 0.5  # replica b's
DEADLINE = 6.0
AUTH = {"authorization": f"Bearer {TOKEN}"}
INVENTORY = f"""
customers:
  - id: acme
    name: ACME
    timezone: UTC
    notification_deadline: {DEADLINE:g}s
    contacts: {{version: "1", notify: [{{sms: "+31201234567"}}]}}
    ports: [{{id: p1, address: 192.0.2.1}}]
"""
OUTAGE = ("acme", "connectivity", "p1", T)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RunWire(Wire):
    """test_peer's transport, also for the runs: the peer's real endpoint handler, or nothing (a partition)."""

    async def share_runs(self, runs: list[Run]) -> list[Run | None]:
        await asyncio.sleep(0)
        if self.far is None:
            raise PeerError("connect: refused")
        body = json.dumps({"from": self.vantage, "runs": [_run_document(r) for r in runs]}).encode()
        status, reply = self.far.handle(body, AUTH)
        assert status == 200, reply
        return [_run(answer) for answer in json.loads(reply)["runs"]]


@dataclass
class Replica:
    audit: AuditWebhook
    notifier: Notifier
    endpoint: DeliveryEndpoint
    watch: DeadlineWatch
    wire: RunWire
    peer_endpoint: PeerEndpoint
    gateway: Gateway

    def page(self, determined_at: float) -> None:
        assert self.endpoint.handle(payload("customer-acme", alert("acme", "p1", determined_at)), AUTH)[0] == 200

    def misses(self) -> list[tuple]:
        return [(m.customer, m.service, m.target, m.determined_at, m.deadline_at, m.reason)
                for m in self.audit.ledger.misses()]


def replica(path: Path, vantage: str, clock: Clock, monotonic: Clock | None = None) -> Replica:
    """`monotonic`: what the notifier's retries follow (by default they are always due, told once)."""
    path.mkdir()
    inventory = parse_inventory_text(INVENTORY)
    audit = AuditWebhook(AuditLedger(path / "audit.sqlite"), TOKEN, 1 << 20, inventory, clock)
    wire, gateway = RunWire(vantage), Gateway()
    notifier = Notifier(DeliveryLedger(path / "delivery.sqlite"), {"sms": gateway}, inventory, clock,
                        backoff=(0.0,), monotonic=monotonic or (lambda: 0.0), peer=wire)  # type: ignore[arg-type]
    deadlines = {c.id: c.notification_deadline for c in inventory.customers}
    watch = DeadlineWatch(audit, deadlines.get, notifier.delivered_at, notices=notifier.determinations,
                          share=notifier.share_runs)
    peer_endpoint = PeerEndpoint(vantage, notifier.peer_claim, lambda: TOKEN, watch.peer_runs)
    return Replica(audit, notifier, DeliveryEndpoint(audit, notifier, inventory, clock), watch, wire, peer_endpoint,
                   gateway)


def pair(tmp_path: Path, clock: Clock, connected: bool = True) -> tuple[Replica, Replica]:
    a, b = replica(tmp_path / "a", "a", clock), replica(tmp_path / "b", "b", clock)
    if connected:
        a.wire.far, b.wire.far = b.peer_endpoint, a.peer_endpoint
    return a, b


def determined(at: float, first_failed_at: float) -> OutageEvent:
    return OutageEvent("determined", TargetKey("acme", "connectivity", "p1"), at, first_failed_at, at)


def both_determine(a: Replica, b: Replica, clock: Clock) -> None:
    """a determines at T, b half a second later (each one probe interval after its first failed probe)."""
    clock.now = T
    a.watch.observe(determined(T, T - 1))
    clock.now = LATER
    b.watch.observe(determined(LATER, LATER - 1))
    if a.wire.far is None:
        return  # partitioned: nothing reaches the peer (tried again until the deadline)
    for r in (a, b):  # each tells the other its run (threenines.notify.peer), on the notifier's loop
        drain(r.notifier, lambda r=r: r.notifier.unshared == 0, 10)
        assert r.notifier.unshared == 0


def paged(tmp_path: Path, clock: Clock, connected: bool) -> tuple[Replica, Replica]:
    """Both replicas determined; at T + 1 the Alertmanager cluster posts the page (determined_at T) to both."""
    a, b = pair(tmp_path, clock, connected)
    both_determine(a, b, clock)
    clock.now = T + 1
    a.page(T)
    b.page(T)
    return a, b


def check(clock: Clock, at: float, *replicas: Replica) -> None:
    clock.now = at
    for r in replicas:
        r.watch.check(at)


def test_a_delivery_two_seconds_after_the_earliest_determination_is_no_miss_on_either_replica(tmp_path: Path
                                                                                              ) -> None:
    clock = Clock(T - 5)
    a, b = paged(tmp_path, clock, connected=True)
    clock.now = T + 2
    drain(a.notifier, lambda: b.notifier.delivered_at(OUTAGE) is not None, 10)  # a sends, b is told
    drain(b.notifier, lambda: b.notifier.pending == 0, 10)
    assert a.gateway.sent == [("firing", "+31201234567")] and b.gateway.sent == []
    assert a.notifier.delivered_at(OUTAGE) == b.notifier.delivered_at(OUTAGE) == T + 2
    check(clock, T + DEADLINE - 0.01, a, b)
    check(clock, LATER + DEADLINE + 1, a, b)
    assert (a.misses(), b.misses()) == ([], [])
    assert a.watch.pending == b.watch.pending == 0


def test_never_notified_is_one_miss_at_the_earliest_determination_plus_the_deadline_in_both_ledgers(
        tmp_path: Path) -> None:
    clock = Clock(T - 5)
    a, b = pair(tmp_path, clock)
    both_determine(a, b, clock)
    check(clock, T + DEADLINE - 0.01, a, b)
    assert (a.misses(), b.misses()) == ([], [])
    check(clock, T + DEADLINE, a, b)  # b's own determination would give T + 6.5: the deadline does not wait
    expected = [("acme", "connectivity", "p1", T, T + DEADLINE, "not_notified")]
    assert a.misses() == b.misses() == expected
    check(clock, T + 60, a, b)
    assert a.misses() == b.misses() == expected  # once per outage
    # the peer's determination told later, again, or in the other direction changes nothing
    assert b.watch.peer_runs([Run("acme", "connectivity", "p1", T - 1, T)]) == [
        Run("acme", "connectivity", "p1", LATER - 1, LATER)]
    check(clock, T + 120, a, b)
    assert a.misses() == b.misses() == expected


def test_partitioned_replicas_count_from_the_page_and_take_either_delivery(tmp_path: Path) -> None:
    # The replicas cannot reach each other (each sends: at least once beats none); the page still carries T.
    clock = Clock(T - 5)
    a, b = paged(tmp_path, clock, connected=False)
    clock.now = T + 2
    for r in (a, b):
        drain(r.notifier, lambda r=r: r.notifier.pending == 0, 10)
    check(clock, LATER + DEADLINE + 1, a, b)
    assert (a.misses(), b.misses()) == ([], [])


def test_a_page_that_no_contact_accepted_is_one_miss_keyed_by_the_pages_determination(tmp_path: Path) -> None:
    clock = Clock(T - 5)
    a, b = paged(tmp_path, clock, connected=False)  # and nothing is ever delivered
    check(clock, T + DEADLINE, a, b)
    assert a.misses() == b.misses() == [("acme", "connectivity", "p1", T, T + DEADLINE, "undelivered")]


def test_the_delivery_of_an_earlier_outage_of_the_target_is_not_this_outages_notification(tmp_path: Path) -> None:
    clock = Clock(T - 5)
    b = replica(tmp_path / "b", "b", clock)
    b.wire.far = None
    clock.now = T
    b.watch.observe(determined(T, T - 1))
    clock.now = T + 1
    b.page(T)
    drain(b.notifier, lambda: b.notifier.pending == 0, 10)
    b.watch.observe(OutageEvent("ended", TargetKey("acme", "connectivity", "p1"), T + 50, T - 1, T, "recovered"))
    clock.now = T + 101
    b.watch.observe(determined(T + 101, T + 100))
    check(clock, T + 101 + DEADLINE, b)
    assert b.misses() == [("acme", "connectivity", "p1", T + 101, T + 101 + DEADLINE, "not_notified")]


def test_runs_that_are_not_a_peers_are_refused_and_nothing_is_learnt(tmp_path: Path) -> None:
    clock = Clock(T)
    b = replica(tmp_path / "b", "b", clock)
    good = {"customer": "acme", "service": "connectivity", "target": "p1", "first_failed_at": T - 1,
            "determined_at": T}
    for runs, sender in (([], "a"), ([good] * 101, "a"), ([None], "a"), ([{**good, "determined_at": "nan"}], "a"),
                         ([{**good, "first_failed_at": T + 1}], "a"), ([{**good, "target": ""}], "a"),
                         ([{**good, "customer": "x" * 201}], "a"), ([good], "b")):
        status, _ = b.peer_endpoint.handle(json.dumps({"from": sender, "runs": runs}).encode(), AUTH)
        assert status == 400, (runs, sender)
    assert b.peer_endpoint.handle(json.dumps({"from": "a", "runs": [good]}).encode(), {})[0] == 401
    # nothing was learnt: b's own run is watched from its own determination
    b.watch.observe(determined(LATER, LATER - 1))
    check(clock, T + DEADLINE, b)
    assert b.misses() == []
    # a replica without the deadline watch (an older one) refuses runs: the asker keeps its own determination
    older = PeerEndpoint("c", b.notifier.peer_claim, lambda: TOKEN)
    assert older.handle(json.dumps({"from": "a", "runs": [good]}).encode(), AUTH)[0] == 400
    assert b.peer_endpoint.handle(json.dumps({"from": "a", "runs": [good]}).encode(), AUTH) == (
        200, json.dumps({"vantage": "b", "runs": [_run_document(Run("acme", "connectivity", "p1", LATER - 1,
                                                                         LATER))]}).encode())


def test_a_peer_that_never_answers_is_told_until_the_deadline_then_the_replica_decides_alone(tmp_path: Path
                                                                                            ) -> None:
    clock = Clock(T)
    b = replica(tmp_path / "b", "b", clock)  # its peer is gone: every question fails at once
    b.watch.observe(determined(LATER, LATER - 1))
    assert b.notifier.unshared == 1
    clock.now = LATER + DEADLINE + 1  # the run was worth telling until b's own deadline
    drain(b.notifier, lambda: b.notifier.unshared == 0, 10)
    assert b.notifier.unshared == 0
    b.watch.check(clock.now)
    assert b.misses() == [("acme", "connectivity", "p1", LATER, LATER + DEADLINE, "not_notified")]


def test_a_replica_down_when_the_outage_began_takes_the_peers_delivery_under_its_earlier_determination(
        tmp_path: Path) -> None:
    # a fails at T - 1, determines at T, is paged and delivers at T + 2 while b is down; b is back, fails its first
    # probe at T + 10 and determines at T + 11 while a's run still fails. The customer was notified 2 s after the
    # outage's earliest determination, with a 6 s deadline: no miss on either replica.
    clock = Clock(T - 5)
    a = replica(tmp_path / "a", "a", clock, monotonic=clock)  # tells b its acceptance again once b is back
    a.wire.far = None  # b is down
    clock.now = T
    a.watch.observe(determined(T, T - 1))
    clock.now = T + 1
    a.page(T)
    clock.now = T + 2
    drain(a.notifier, lambda: a.notifier.pending == 0, 10)
    assert a.gateway.sent == [("firing", "+31201234567")] and a.notifier.delivered_at(OUTAGE) == T + 2
    check(clock, T + DEADLINE, a)
    assert a.misses() == []
    b = replica(tmp_path / "b", "b", clock)
    a.wire.far, b.wire.far = b.peer_endpoint, a.peer_endpoint
    clock.now = T + 11
    b.watch.observe(determined(T + 11, T + 10))
    drain(b.notifier, lambda: b.notifier.unshared == 0, 10)  # b tells a its run; a answers with its own
    drain(a.notifier, lambda: b.notifier.delivered_at(OUTAGE) is not None, 10)
    assert b.notifier.unshared == 0 and b.notifier.delivered_at(OUTAGE) == T + 2
    check(clock, T + 11 + DEADLINE + 1, a, b)
    assert (a.misses(), b.misses()) == ([], [])
    assert a.watch.pending == b.watch.pending == 0


def test_a_peer_flapping_on_a_target_leaves_a_bounded_record_and_its_newest_run_still_counts(tmp_path: Path
                                                                                              ) -> None:
    clock = Clock(T)
    b = replica(tmp_path / "b", "b", clock)
    key = ("acme", "connectivity", "p1")

    def push(runs: list[Run]) -> None:
        for i in range(0, len(runs), RUN_BATCH):
            body = json.dumps({"from": "a", "runs": [_run_document(r) for r in runs[i:i + RUN_BATCH]]}).encode()
            assert b.peer_endpoint.handle(body, AUTH)[0] == 200

    flaps = [Run(*key, T + 10 * i, T + 10 * i + 2) for i in range(1000)]  # b never determines meanwhile
    push(flaps)
    assert b.watch._peer_runs[key] == flaps[-PEER_RUNS:]
    # targets this replica's inventory does not have are not kept at all
    push([Run("acme", "connectivity", f"p{i}", T, T + 2) for i in range(2, 1002)]
         + [Run("other", "connectivity", "p1", T, T + 2)])
    assert set(b.watch._peer_runs) == {key}
    # the newest is the peer's run of the outage b determines now: counted from its determination
    last = flaps[-1].determined_at
    clock.now = last + 0.5
    b.watch.observe(determined(last + 0.5, last - 0.5))
    check(clock, last + DEADLINE, b)
    assert b.misses() == [("acme", "connectivity", "p1", last, last + DEADLINE, "not_notified")]
    # a run older than KEEP goes with the next one the peer tells
    check(clock, last + KEEP + 100, b)
    push([Run(*key, last + KEEP + 90, last + KEEP + 92)])
    assert b.watch._peer_runs[key] == [Run(*key, last + KEEP + 90, last + KEEP + 92)]
