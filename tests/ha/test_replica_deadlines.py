"""Notification deadlines over replica exporters, on real processes (issue #19): two `threenines serve --vantage
a|b --peer …` replicas probe one port in a network namespace the test cuts, with a 6 s notification deadline, and an
SMTP relay is the customer's e-mail contact (tests/ha/replicas.py).

The contract owes "notification within 15 minutes of determining unavailability" (here 6 s). With two vantages the
provider determined the outage when the first of them did: the page carries that determination (the rule's
`min by`), and so does the deadline. Expected values from those words, not from the code:

1. the page reaches both replicas, one of them delivers within a few seconds: notified on time, so neither
   replica's audit ledger may hold a miss (before the fix, the replica that determined later watched its own
   determination, found no delivery under it and recorded `not_notified`: a false credit of a day's rent);
2. the next cut is never paged (no Alertmanager): one miss of the outage, `not_notified`, at the earliest
   determination + 6 s, and the same row in both ledgers, so that merging the replicas counts it once.

The replicas' probe phases are made at least 0.2 s apart first, so the two determinations differ.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.foundation.exporter_process import sample, scrape
from tests.ha.replicas import INTERVAL, Replicas, replicas
from tests.support import wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

DEADLINE = 6.0
VANTAGES = ("a", "b")


def phase(r: Replicas, vantage: str) -> float:
    return (r.metric(vantage, "threenines_probe_last_timestamp_seconds") or 0.0) % INTERVAL


def spread_phases(r: Replicas) -> None:
    """Restart b until its probes run at least 0.2 s apart from a's (each start picks a new phase)."""
    for _ in range(8):
        r.wait_probed("a")
        r.wait_probed("b")
        apart = abs(phase(r, "a") - phase(r, "b"))
        if 0.2 <= apart <= INTERVAL - 0.2:
            return
        r.replicas["b"].stop()
        r.replicas["b"].start()
    raise AssertionError("the replicas' probe phases stayed within 0.2 s of each other over 8 restarts")


def determined(r: Replicas) -> dict[str, float]:
    def both() -> dict[str, float] | None:
        found = {v: r.metric(v, "threenines_service_determined_timestamp_seconds") or 0.0 for v in VANTAGES}
        return found if all(found.values()) else None

    return wait_until(both, 15, interval=0.1, what="both replicas to determine the cut")


def missed_total(r: Replicas, vantage: str) -> float | None:
    return sample(scrape(r.listen[vantage]), "threenines_notification_deadline_missed_total", customer="acme")


def accepted_at(r: Replicas, vantage: str, determined_at: float) -> float | None:
    with sqlite3.connect(f"file:{r.state(vantage) / 'delivery.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT accepted_at FROM deliveries WHERE event = 'firing' AND abs(determined_at - ?) "
                         "< 0.0005", (determined_at,)).fetchone()
    return row[0] if row else None


@pytest.mark.timeout(240)
def test_the_deadline_counts_from_the_earliest_determination_on_every_replica(tmp_path) -> None:
    with replicas(tmp_path, deadline=f"{DEADLINE:g}s") as r:
        for vantage in VANTAGES:
            wait_until(lambda v=vantage: r.metric(v, "threenines_service_known") == 1, 20,
                       what=f"replica {vantage} to see the port")
        spread_phases(r)

        # 1. Paged with the earliest determination, delivered within seconds: no miss anywhere.
        r.port.down()
        first = determined(r)
        assert abs(first["a"] - first["b"]) >= 0.1, first
        earliest = min(first.values())
        r.post_page(earliest)
        wait_until(lambda: r.relay.messages, DEADLINE, interval=0.1, what="the relay to take the e-mail")
        delivered = wait_until(lambda: accepted_at(r, "a", earliest) and accepted_at(r, "b", earliest), 10,
                               what="both ledgers to hold the acceptance")
        assert delivered - earliest < DEADLINE  # on time by the contract's words: the premise of this part
        # Both watches decide at their deadline's first tick after it passes (ticks of 1 s).
        time.sleep(max(0.0, max(first.values()) + DEADLINE + 3 - time.time()))
        assert (r.misses("a"), r.misses("b")) == ([], [])
        assert (missed_total(r, "a"), missed_total(r, "b")) == (0.0, 0.0)
        assert len(r.relay.messages) == 1
        r.port.up()
        wait_until(lambda: all(r.metric(v, "threenines_service_up") == 1 for v in VANTAGES), 15,
                   what="both replicas to see the port again")

        # 2. Never paged: one miss of the outage, at its earliest determination + the deadline, in both ledgers.
        r.port.down()
        second = determined(r)
        assert abs(second["a"] - second["b"]) >= 0.1, second
        earliest = min(second.values())
        wait_until(lambda: r.misses("a") and r.misses("b"), DEADLINE + 10, interval=0.2,
                   what="both replicas to decide the deadline")
        time.sleep(2)  # a second row, under the later determination, would come at the next ticks
        [miss_a], [miss_b] = r.misses("a"), r.misses("b")
        assert miss_a[:4] == ("acme", "connectivity", "ns", round(earliest, 3))
        assert miss_a[4] == pytest.approx(earliest + DEADLINE, abs=1e-6) and miss_a[5] == "not_notified"
        assert miss_b == miss_a
        for vantage in VANTAGES:
            text = scrape(r.listen[vantage])
            assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") == 1.0
            assert sample(text, "threenines_notification_deadline_missed_timestamp_seconds", target="ns") == \
                pytest.approx(earliest + DEADLINE, abs=1e-6)
        assert len(r.relay.messages) == 1
        r.port.up()
