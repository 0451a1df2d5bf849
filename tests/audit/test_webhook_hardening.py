"""The audit webhook refuses what would make the evidence lie (issue 22): impossible determination times, payloads
that crashed the parser or poisoned the ledger's transaction, alerts for customers and targets the inventory does
not have. Each case is the adversarial run's input; the fuzz targets keep looking for the next one."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.audit.test_webhook import AUTH, TOKEN, Clock, alert, make_webhook, metrics, payload, rows
from threenines.alerting.webhook import AuditWebhook, PayloadError, parse_payload
from threenines.config.inventory_load import parse_inventory_text
from threenines.ledgers.audit import MAX_CLOCK_SKEW, AuditLedger, Dispatch

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LAST = "threenines_notification_last_dispatch_determined_timestamp_seconds"
UPLINK = (("customer", "acme"), ("service", "connectivity"), ("target", "uplink-a"))


def alert_with(determined_at: str, target: str = "uplink-a", customer: str = "acme") -> dict:
    body = alert(customer, target, None)
    body["annotations"]["determined_at"] = determined_at
    return body


def last_determined(hook: AuditWebhook) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (name, labels), value in metrics(hook).items() if name == LAST}


# -- determination times ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "inf", "+Inf", "Infinity", "nan", "NaN", "1e308", f"{NOW + 366 * 86400:.3f}", f"{NOW + 60:.3f}",
    "0", "0.000", "-5", "0x5f5e100", "", "1767225600,000", f"{NOW - 400 * 86400:.3f}",
])
def test_an_impossible_determined_at_is_refused_and_nothing_is_recorded(tmp_path: Path, raw: str) -> None:
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW))
    good = alert("acme", "uplink-a", NOW - 120, fingerprint="good")
    status, reply = hook.handle(payload("customer-acme", good, alert_with(raw)), AUTH)
    assert status == 400
    assert b"alerts[1].annotations.determined_at" in reply
    assert rows(tmp_path / "audit.sqlite") == []  # the whole delivery or none of it
    assert last_determined(hook) == {}


def test_a_year_ahead_names_the_reason(tmp_path: Path) -> None:
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW))
    status, reply = hook.handle(payload("customer-acme", alert_with(f"{NOW + 365 * 86400:.3f}")), AUTH)
    assert status == 400
    assert b"a notification cannot precede its determination" in reply


def test_within_the_clock_skew_allowance_the_delay_is_zero_never_negative(tmp_path: Path) -> None:
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW))
    status, _ = hook.handle(payload("customer-acme", alert("acme", "uplink-a", NOW + MAX_CLOCK_SKEW / 2)), AUTH)
    assert status == 200
    [(_, _, determined_at, dispatched_at, *_, first, delay, _)] = rows(tmp_path / "audit.sqlite")
    assert determined_at > dispatched_at and first == 1 and delay == 0.0
    assert metrics(hook)[("threenines_notification_delay_seconds_sum", (("customer", "acme"),))] == 0.0


def test_impossible_rows_already_in_the_ledger_are_neutralised_at_every_start(tmp_path: Path) -> None:
    """A ledger written before the webhook refused them holds +Inf, 1e308 and a year ahead; append-only, so
    the rebuild must stop them from holding ThreeninesNotificationOverdue off for those targets."""
    path = tmp_path / "audit.sqlite"
    inventory = """
customers:
  - id: acme
    timezone: UTC
    notification_deadline: 15m
    contacts: {version: "1", notify: [{email: noc@acme.example}]}
    ports: [{id: a, address: 192.0.2.1}, {id: b, address: 192.0.2.2}, {id: c, address: 192.0.2.3},
            {id: ok, address: 192.0.2.4}]
"""
    ledger = AuditLedger(path)
    bad = {"a": math.inf, "b": 1e308, "c": NOW + 365 * 86400, "ok": NOW - 95}
    ledger.append([Dispatch(NOW, "customer-acme", f"f-{t}", "ThreeninesServiceUnavailable", "acme",
                            "connectivity", t, at, "", "", False, "1", 900.0, NOW - at, True, False, "")
                   for t, at in bad.items()])
    ledger.close()
    with sqlite3.connect(path) as db:  # what the old exporter wrote: the values themselves, not NULL
        assert db.execute("SELECT count(*) FROM dispatches WHERE determined_at > 1e300").fetchone() == (2,)

    hook = AuditWebhook(AuditLedger(path), TOKEN, 64 * 1024, parse_inventory_text(inventory), clock=Clock(NOW))
    m = metrics(hook)
    assert {dict(labels)["target"]: value for labels, value in last_determined(hook).items()} == {"ok": NOW - 95}
    assert m[("threenines_notification_delay_seconds_count", (("customer", "acme"),))] == 1
    assert m[("threenines_notification_delay_seconds_sum", (("customer", "acme"),))] == 95
    # the rows stay as evidence and still count as deliveries
    assert m[("threenines_notification_dispatches_total", (("customer", "acme"), ("receiver", "customer-acme")))] == 4
    # and a real outage of target "a" is a first notification again (the +Inf row did not claim it)
    status, _ = hook.handle(payload("customer-acme", alert("acme", "a", NOW - 30)), AUTH)
    assert status == 200 and last_determined(hook)[(("customer", "acme"), ("service", "connectivity"),
                                                    ("target", "a"))] == NOW - 30


# -- payloads that gave 500 or poisoned the ledger ------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"receiver": "customer-acme", "alerts": [], "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"receiver": "customer-acme", "alerts": [], "n": ' + b"9" * 5000 + b"}",
    b'{"receiver": "customer-acme", "alerts": [], "n": NaN}',
    b'{"receiver": "customer-acme", "alerts": [], "n": -Infinity}',
], ids=["nested", "nested-inside", "5000-digits", "NaN", "-Infinity"])
def test_payloads_that_crashed_the_parser_are_400(tmp_path: Path, body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_payload(body)
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW), max_body=1024 * 1024)
    assert hook.handle(body, AUTH)[0] == 400


@pytest.mark.parametrize("where", ["label", "label-name", "annotation", "fingerprint", "receiver", "groupKey"])
def test_a_lone_surrogate_is_400_and_the_next_valid_delivery_is_recorded(tmp_path: Path, where: str) -> None:
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW))
    body = json.loads(payload("customer-acme", alert("acme", "uplink-a", NOW - 60)))
    target = body["alerts"][0]
    if where == "label":
        target["labels"]["alertname"] = "SURROGATE"
    elif where == "label-name":
        target["labels"]["SURROGATE"] = "x"
    elif where == "annotation":
        target["annotations"]["summary"] = "SURROGATE"
    elif where == "fingerprint":
        target["fingerprint"] = "SURROGATE"
    else:
        body[where] = "SURROGATE"
    # json.dumps would escape a real lone surrogate the same way: \ud800 alone in the JSON text
    poisoned = json.dumps(body).replace("SURROGATE", "\\ud800").encode()
    assert hook.handle(poisoned, AUTH)[0] == 400
    status, reply = hook.handle(payload("customer-acme", alert("acme", "uplink-a", NOW - 60)), AUTH)
    assert (status, json.loads(reply)) == (200, {"recorded": 1})
    assert len(rows(tmp_path / "audit.sqlite")) == 1
    assert hook.ledger.writes_failed == 0


def test_a_write_that_fails_outside_sqlite_leaves_no_transaction_open(tmp_path: Path) -> None:
    ledger = AuditLedger(tmp_path / "audit.sqlite")
    row = Dispatch(NOW, "customer-acme", "f", "A", "acme", "connectivity", "uplink-a", NOW - 60, "", "", False,
                   "1", 900.0, 60.0, True, False, "")
    poisoned = Dispatch(**{**row.__dict__, "alertname": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        ledger.append([poisoned])
    ledger.append([row])  # "cannot start a transaction within a transaction" before
    assert ledger.writes_failed == 1 and ledger.writes_ok == 1
    assert list(ledger.dispatches()) == [row]


# -- alerts the inventory does not have ------------------------------------------------------------------------


def test_invented_targets_customers_and_receivers_create_no_series_and_are_counted(tmp_path: Path) -> None:
    hook = make_webhook(tmp_path / "audit.sqlite", Clock(NOW), max_body=1024 * 1024)
    invented = [alert("acme", f"invented-{i}", NOW - 60, fingerprint=f"i{i}") for i in range(2400)]
    status, reply = hook.handle(payload("customer-acme", *invented), AUTH)
    assert (status, json.loads(reply)) == (200, {"recorded": 0, "rejected": 2400})
    status, reply = hook.handle(payload("customer-initech", alert("initech", "uplink-a", NOW - 60)), AUTH)
    assert (status, json.loads(reply)) == (200, {"recorded": 0, "rejected": 1})
    # acme's alert posted by globex's receiver: a misrouted or forged delivery
    status, reply = hook.handle(payload("customer-globex", alert("acme", "uplink-a", NOW - 60)), AUTH)
    assert (status, json.loads(reply)) == (200, {"recorded": 0, "rejected": 1})
    good = alert("acme", "uplink-a", NOW - 60, fingerprint="good")
    status, reply = hook.handle(payload("customer-acme", good, invented[0]), AUTH)
    assert (status, json.loads(reply)) == (200, {"recorded": 1, "rejected": 1})

    assert [(r[0], r[1]) for r in rows(tmp_path / "audit.sqlite")] == [("acme", "uplink-a")]
    m = metrics(hook)
    assert not [key for key in m if "invented" in str(key) or "initech" in str(key)]
    assert last_determined(hook) == {UPLINK: NOW - 60}
    assert {labels: v for (name, labels), v in m.items() if name == "threenines_notification_dispatches_total"} == {
        (("customer", "acme"), ("receiver", "customer-acme")): 1}
    rejected = {dict(labels)["reason"]: v for (name, labels), v in m.items()
                if name == "threenines_notification_rejected_alerts_total"}
    assert rejected == {"unknown_target": 2401, "unknown_customer": 1, "wrong_receiver": 1}


def test_rows_of_a_customer_the_inventory_no_longer_has_create_no_series_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    ledger = AuditLedger(path)
    ledger.append([Dispatch(NOW, "customer-initech", "f", "A", "initech", "connectivity", "x", NOW - 60, "", "",
                            False, "1", 900.0, 60.0, True, False, "")])
    ledger.close()
    hook = make_webhook(path, Clock(NOW))
    assert not [key for key in metrics(hook) if "initech" in str(key)]


# -- the token ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", " ", "\n"])
def test_an_empty_token_is_refused_not_authentication_off(tmp_path: Path, token: str) -> None:
    with pytest.raises(ValueError, match="empty audit token"):
        make_webhook(tmp_path / "audit.sqlite", Clock(NOW), token=token)


# -- fuzz targets ---------------------------------------------------------------------------------------------------

# Characters with lone surrogates mixed in: hypothesis leaves them out of text by default.
chars = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(chars, max_size=8))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(chars, max_size=6), inner, max_size=4)), max_leaves=20)


def near_payload() -> st.SearchStrategy[bytes]:
    """Alertmanager-shaped bodies with any field replaced by any JSON value (surrogates and NaN included)."""
    base = json.loads(payload("customer-acme", alert("acme", "uplink-a", NOW - 60)))
    paths = [("receiver",), ("alerts",), ("groupKey",), ("alerts", 0), ("alerts", 0, "status"),
             ("alerts", 0, "labels"), ("alerts", 0, "labels", "customer"), ("alerts", 0, "annotations"),
             ("alerts", 0, "annotations", "determined_at"), ("alerts", 0, "startsAt"), ("alerts", 0, "endsAt"),
             ("alerts", 0, "fingerprint")]

    def build(path: tuple, value: object) -> bytes:
        body = json.loads(json.dumps(base))
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(body, allow_nan=True).encode()

    return st.builds(build, st.sampled_from(paths), json_values)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), near_payload()))
@example(b"[" * 10_000)
@example(b'{"receiver": "r", "alerts": [], "n": ' + b"1" * 5000 + b"}")
def test_fuzz_parse_payload_raises_only_payload_error(body: bytes) -> None:
    try:
        parsed = parse_payload(body)
    except PayloadError:
        return
    strings = [parsed.receiver, parsed.group_key]
    for a in parsed.alerts:
        strings += [a.status, a.starts_at, a.ends_at, a.fingerprint, *a.labels, *a.labels.values(),
                    *a.annotations, *a.annotations.values()]
    for text in strings:
        text.encode("utf-8")  # everything parsed can be written to the ledger


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(chars, max_size=30), st.floats(allow_nan=True).map(repr),
                 st.floats(NOW - 2 * 366 * 86400, NOW + 2 * 366 * 86400).map(lambda v: f"{v:.3f}")))
@example("inf")
@example("1e308")
def test_fuzz_no_accepted_delivery_leaves_an_impossible_time_in_the_metrics(tmp_path_factory, raw: str) -> None:
    hook = make_webhook(tmp_path_factory.mktemp("fuzz") / "audit.sqlite", Clock(NOW))
    status, _ = hook.handle(payload("customer-acme", alert_with(raw)), AUTH)
    assert status in (200, 400)
    for value in last_determined(hook).values():
        assert math.isfinite(value) and NOW - 366 * 86400 <= value <= NOW + MAX_CLOCK_SKEW
    hook.ledger.close()
