"""One outage, one notification, even when the page's determination moves (docs/alerting.md "The deadline with
replicas"): under `merge: any` the alert's determined_at is the earliest determination among the vantages still
failing, so when the vantage that determined first recovers while another still sees the outage, the same firing
alert comes again with a later determined_at. The contract: the customer is notified once per outage, and told
once that it is over. Payloads as Alertmanager posts them; the contacts are real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tests.audit.test_webhook import alert
from tests.notify.sinks import Sink, http_sink
from tests.notify.test_delivery import Stack, inventory, stack

TARGET = ("acme", "connectivity", "uplink-a")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def firing(determined_at: float, starts_at: float) -> dict:
    return {**alert("acme", "uplink-a", determined_at), "startsAt": _iso(starts_at)}


def resolved(determined_at: float, starts_at: float, ends_at: float) -> dict:
    return {**alert("acme", "uplink-a", determined_at, status="resolved"), "startsAt": _iso(starts_at),
            "endsAt": _iso(ends_at)}


@contextmanager
def two_contacts(tmp_path: Path) -> Iterator[tuple[Stack, Sink, Sink, str]]:
    with http_sink() as noc, http_sink() as owner:
        text = inventory(f"{{webhook: {{url: '{noc.url}'}}}}, {{webhook: {{url: '{owner.url}'}}}}")
        yield stack(tmp_path, text), noc, owner, text


def statuses(*sinks: Sink) -> list[list[tuple[str, str]]]:
    return [[(body["status"], body["determined_at"]) for _, body in sink.received] for sink in sinks]


def first_dispatches(s: Stack) -> list[float]:
    with sqlite3.connect(s.path / "audit.sqlite") as db:
        return [r[0] for r in db.execute("SELECT determined_at FROM dispatches WHERE first = 1 ORDER BY id")]


def test_a_later_determination_of_a_firing_outage_is_the_same_outage_notified_once_and_resolved_once(
        tmp_path: Path) -> None:
    t = round(time.time() - 300, 3)
    starts = t + 20  # Prometheus saw the determination at its next scrape and evaluation
    with two_contacts(tmp_path) as (s, noc, owner, _):
        assert s.post(firing(t, starts))[1]["queued"] == 2
        s.run_until_settled()
        # the first vantage recovered; the other (determined 100 s later) still sees the outage: same alert
        assert s.post(firing(t + 100, starts))[1]["queued"] == 0
        assert s.post(resolved(t + 100, starts, t + 250))[1]["queued"] == 2
        s.run_until_settled()
    for sent in statuses(noc, owner):
        assert [status for status, _ in sent] == ["firing", "resolved"]
        assert sent[0][1] == sent[1][1]  # the resolved notice is about the outage the contact was told of
    rows = s.deliveries()
    assert {(r["event"], r["determined_at"]) for r in rows} == {("firing", t), ("resolved", t)} and len(rows) == 4
    assert all(r["accepted_at"] is not None for r in rows)
    assert s.notifier.delivered_at((*TARGET, t)) is not None
    assert s.notifier.determinations(*TARGET) == [t]
    # the audit: one outage, one first dispatch, one delay sample; the later determination is no new outage
    assert first_dispatches(s) == [t]
    assert sum(s.audit.state.copy().delays.buckets["acme"]) == 1
    assert s.audit.determinations(*TARGET) == [t]


def test_the_outage_stays_one_across_a_restart(tmp_path: Path) -> None:
    t = round(time.time() - 300, 3)
    starts = t + 20
    with two_contacts(tmp_path) as (s, noc, owner, text):
        assert s.post(firing(t, starts))[1]["queued"] == 2
        assert s.post(firing(t + 100, starts))[1]["queued"] == 0
        s.run_until_settled()
        s.notifier.ledger.close()
        s.audit.ledger.close()
        restarted = stack(tmp_path, text)
        assert restarted.post(firing(t + 100, starts))[1]["queued"] == 0
        assert restarted.post(resolved(t + 100, starts, t + 250))[1]["queued"] == 2
        restarted.run_until_settled()
    for sent in statuses(noc, owner):
        assert sent == [("firing", sent[0][1]), ("resolved", sent[0][1])]
    assert first_dispatches(restarted) == [t]


def test_an_outage_after_a_resolved_one_is_a_new_outage(tmp_path: Path) -> None:
    # One exporter, or `merge: all`: the alert resolved, then the target failed again: a second outage, notified.
    t = round(time.time() - 3000, 3)
    later = t + 1200
    with two_contacts(tmp_path) as (s, noc, owner, _):
        assert s.post(firing(t, t + 20))[1]["queued"] == 2
        assert s.post(resolved(t, t + 20, t + 600))[1]["queued"] == 2
        s.run_until_settled()
        assert s.post(firing(later, later + 20))[1]["queued"] == 2
        assert s.post(resolved(later, later + 20, later + 600))[1]["queued"] == 2
        s.run_until_settled()
    for sent in statuses(noc, owner):
        assert [status for status, _ in sent] == ["firing", "resolved", "firing", "resolved"]
        assert sent[0][1] == sent[1][1] != sent[2][1] == sent[3][1]
    assert first_dispatches(s) == [t, later]


def test_an_outage_after_one_whose_resolved_post_never_came_is_a_new_outage(tmp_path: Path) -> None:
    # A silence muted the resolved post (a maintenance window began during the outage): the next outage of the
    # target is a new alert, with a later startsAt, and must be notified all the same.
    t = round(time.time() - 3000, 3)
    later = t + 1200
    with two_contacts(tmp_path) as (s, noc, owner, _):
        assert s.post(firing(t, t + 20))[1]["queued"] == 2
        s.run_until_settled()
        assert s.post(firing(later, later + 20))[1]["queued"] == 2
        s.run_until_settled()
    for sent in statuses(noc, owner):
        assert [status for status, _ in sent] == ["firing", "firing"] and sent[0][1] != sent[1][1]
    assert first_dispatches(s) == [t, later]
