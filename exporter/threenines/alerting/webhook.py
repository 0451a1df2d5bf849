"""The notification audit: Alertmanager's webhook → append-only SQLite ledger → delay and deadline metrics.

Every customer receiver in the generated Alertmanager config also posts to `POST /alertmanager/webhook`.
Alertmanager sends all integrations of a receiver in parallel when it flushes an alert group, so the time this
webhook arrives is the dispatch time to the designated contacts. It is taken from the exporter's clock, the
same clock that stamped `determined_at`, so the delay needs no clock synchronisation between hosts.

Only the *first* firing dispatch of an outage (customer, service, target, determined_at) is a notification
in the contract's sense: it gives the delay and may miss the deadline. Repeats (repeat_interval, or an
Alertmanager that lost its notification log in a restart) are recorded as evidence but never counted twice.

With replica exporters under `merge: any` the alert's determined_at can move later while it fires (the vantage
that determined first recovered, docs/alerting.md "The deadline with replicas"): a firing or resolved alert whose
determination is later than an outage of the same target still open here (its firing dispatched, no resolved
one), and whose Alertmanager `startsAt` is no later than that outage's, is that outage (`outage_of`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from threenines.alerting.alertmanager_config import RECEIVER_PREFIX
from threenines.config.inventory import Inventory
from threenines.exposition.audit import AuditCollector
from threenines.ledgers.audit import (
    AuditLedger,
    AuditState,
    Dispatch,
    Miss,
    determination_problem,
    outage_key,
)

log = logging.getLogger(__name__)

Outage = tuple[str, str, str, float]
OPEN_PER_TARGET = 16  # open outages kept per target: a resolved post that never came must not grow memory


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload; nothing of it is recorded."""


@dataclass(frozen=True)
class _Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str


@dataclass(frozen=True)
class Payload:
    receiver: str
    group_key: str
    alerts: tuple[_Alert, ...]


def _storable(text: str) -> bool:
    # JSON may carry a lone surrogate (the escape \ud800 alone), a str but no UTF-8: refused here, before the
    # ledger's transaction, where it failed and left the transaction open for the next delivery.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{where} must be an object of strings")
    for key, text in value.items():
        if not (_storable(key) and _storable(text)):
            raise PayloadError(f"{where} holds a string that is not valid Unicode (a lone surrogate)")
    return value


def _no_constant(name: str) -> object:
    raise PayloadError(f"not JSON: {name} is not a JSON value")


def parse_payload(body: bytes) -> Payload:
    """Alertmanager webhook payload (version 4) → Payload; PayloadError names the first problem, and nothing
    else is ever raised (a 500 would make Alertmanager retry a bad delivery for ever)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise PayloadError("not JSON that an Alertmanager sends: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, and integers over 4300 digits
        raise PayloadError(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise PayloadError("the payload must be a JSON object")
    receiver, alerts = data.get("receiver"), data.get("alerts")
    if not isinstance(receiver, str) or not receiver:
        raise PayloadError("receiver must be a non-empty string")
    if not isinstance(alerts, list):
        raise PayloadError("alerts must be a list")
    parsed = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{i}] must be an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}].status must be firing or resolved")
        fields = {k: alert.get(k) for k in ("startsAt", "endsAt", "fingerprint")}
        for key in ("startsAt", "fingerprint"):
            if not isinstance(fields[key], str) or not fields[key]:
                raise PayloadError(f"alerts[{i}].{key} must be a non-empty string")
        for key, text in fields.items():
            if isinstance(text, str) and not _storable(text):
                raise PayloadError(f"alerts[{i}].{key} is not valid Unicode (a lone surrogate)")
        parsed.append(_Alert(
            status=status,
            labels=_string_map(alert.get("labels"), f"alerts[{i}].labels"),
            annotations=_string_map(alert.get("annotations", {}), f"alerts[{i}].annotations"),
            starts_at=str(fields["startsAt"]),  # checked above: a non-empty string
            ends_at=fields["endsAt"] if isinstance(fields["endsAt"], str) else "",
            fingerprint=str(fields["fingerprint"]),
        ))
    group_key = data.get("groupKey")
    group_key = group_key if isinstance(group_key, str) else ""
    if not (_storable(receiver) and _storable(group_key)):
        raise PayloadError("receiver and groupKey must be valid Unicode (no lone surrogate)")
    return Payload(receiver=receiver, group_key=group_key, alerts=tuple(parsed))


class AuditWebhook:
    """`POST /alertmanager/webhook`: bearer token, size limit, whole payload recorded or none of it."""

    def __init__(self, ledger: AuditLedger, token: str | None, max_body: int, inventory: Inventory,
                 clock: Callable[[], float] = time.time, on_record: Callable[[], None] | None = None) -> None:
        if token is not None and not token.strip():
            # hmac.compare_digest(b"", b"") is True: "Authorization: Bearer" would then authenticate anyone.
            raise ValueError("an empty audit token would turn authentication off")
        self.ledger = ledger
        self.max_body = max_body
        self._token = token.encode() if token is not None else None
        self._clock = clock
        self._on_record = on_record
        self._lock = threading.Lock()
        self.state = AuditState()
        # Per target, the determinations its first dispatches and misses carry (the page's): a replica's deadline
        # watch finds there the outage's determination the page carries when it is not its own.
        self._determined: dict[tuple[str, str, str], set[float]] = {}
        # Per target, the outages whose firing was dispatched and no resolved yet, with the latest startsAt they
        # came with; and the later determinations that were found to be one of them (see the module's doc).
        self._open: dict[tuple[str, str, str], dict[float, float]] = {}
        self._alias: dict[Outage, Outage] = {}
        self.set_inventory(inventory)
        for dispatch in ledger.dispatches():
            self.state.apply(dispatch)
            self._note(dispatch)
            self._track(dispatch, self._continued(dispatch))
        for miss in ledger.misses():
            self.state.apply_miss(miss)
            self._note(miss)
        self.collector = AuditCollector(self.state)

    def _note(self, record: Dispatch | Miss) -> None:
        if isinstance(record, Dispatch) and not (record.first and record.outage is not None
                                                 and self.state.is_counted(record.outage)):
            return
        outage = record.outage
        assert outage is not None
        self._determined.setdefault(outage[:3], set()).add(outage[3])

    def _continued(self, d: Dispatch | _Arrival) -> Outage | None:
        """The outage a dispatch belongs to: its own key, or an open outage of the target it continues."""
        if d.outage is None:
            return None
        if d.outage in self._alias:
            return self._alias[d.outage]
        open_ = self._open.get(d.outage[:3], {})
        starts = _starts_at(d.starts_at)
        if d.outage[3] in open_ or starts is None:
            return d.outage
        # A later determination of the alert that kept firing: Alertmanager keeps the earliest startsAt of a firing
        # alert, while a new outage after one whose resolved post was lost (muted by a silence) starts later.
        earlier = [t for t, s in open_.items() if t < d.outage[3] and starts <= s]
        return (*d.outage[:3], max(earlier)) if earlier else d.outage

    def _track(self, d: Dispatch, outage: Outage | None) -> None:
        if outage is None or d.outage is None:
            return
        if outage != d.outage:
            self._alias[d.outage] = outage
        open_ = self._open.setdefault(outage[:3], {})
        if d.resolved:
            open_.pop(outage[3], None)
            return
        starts = _starts_at(d.starts_at)
        if starts is not None:
            open_[outage[3]] = max(open_.get(outage[3], starts), starts)
        for old in sorted(open_)[:-OPEN_PER_TARGET]:
            del open_[old]

    def outage_of(self, customer: str, service: str, target: str, determined_at: float) -> Outage:
        """The outage an alert with this determination belongs to, as this webhook recorded it: its own key, or
        the open outage of the target whose later determination it is (after `handle` took the alert)."""
        outage = outage_key(customer, service, target, determined_at)
        with self._lock:
            return self._alias.get(outage, outage)

    def determinations(self, customer: str, service: str, target: str) -> list[float]:
        """The determinations (to the millisecond) of this target's outages that a first dispatch or a miss
        carries, oldest first."""
        with self._lock:
            return sorted(self._determined.get((customer, service, target), ()))

    def decide_deadline(self, outage: tuple[str, str, str, float], deadline_at: float, now: float,
                        delivered_at: Callable[[tuple[str, str, str, float]], float | None] | None = None,
                        same: Iterable[tuple[str, str, str, float]] = ()) -> Miss | bool:
        """Decide an outage whose notification deadline passed by `now` (threenines.alerting.deadlines).

        True: a first dispatch reached the ledger by the deadline, nothing to record. A Miss: it did not, and
        the miss is now in the ledger. False: the ledger refused the write (decided again at the next check).
        Decided under the lock that records dispatches, whose arrival is stamped under it too: a dispatch and
        a miss of one outage are ordered, so a dispatch recorded after a miss is late by construction.
        With `delivered_at` (threenines.notify: when every designated contact's channel accepted the
        notification) the promise is measured to delivery: a dispatch that no channel accepted is no
        notification (reason `undelivered`).
        `same`: the outage's other determinations (replica exporters, threenines.alerting.deadlines): a dispatch
        or a delivery under any of them is the outage's notification; the miss is keyed by `outage`.
        """
        with self._lock:
            outage = outage_key(*outage)
            keys = [outage, *(outage_key(*o) for o in same)]
            dispatched = _earliest(self.state.first_dispatch_at(k) for k in keys)
            first = dispatched if delivered_at is None else _earliest(delivered_at(k) for k in keys)
            if first is not None and first <= deadline_at:
                return True
            reason = "late" if first is not None else "undelivered" if dispatched is not None else "not_notified"
            miss = Miss(*outage, deadline_at, now, reason)
            try:
                self.ledger.append_miss(miss)
            except sqlite3.Error as err:
                log.error("audit ledger write of a missed deadline failed, will retry: %s", err)
                return False
            self.state.apply_miss(miss)
            self._note(miss)
        return miss

    def set_inventory(self, inventory: Inventory) -> None:
        """After a reload: new deadlines, contact versions and targets apply to dispatches from now on."""
        self._inventory = inventory
        self._targets = frozenset(
            [(c.id, "connectivity", p.id) for c in inventory.customers for p in c.ports]
            + [(c.id, "power", "power") for c in inventory.customers if c.power is not None]
            + [(c.id, "application", a.id) for c in inventory.customers for a in c.applications])
        self.state.customers = frozenset(c.id for c in inventory.customers)
        self.state.targets = self._targets

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self._token is not None and not self._authorized(headers):
            return 401, b"missing or wrong bearer token\n"
        if len(body) > self.max_body:
            return 413, f"body larger than {self.max_body} bytes\n".encode()
        try:
            payload = parse_payload(body)
        except PayloadError as err:
            return 400, f"{err}\n".encode()
        with self._lock:  # one delivery at a time, so "first dispatch of an outage" is decided exactly once
            # Stamped under the lock that also decides missed deadlines (decide_deadline): whichever of the two
            # comes first, the other sees it.
            dispatched_at = self._clock()
            try:
                dispatches, rejected = self._dispatches(payload, dispatched_at)
            except PayloadError as err:  # an impossible determined_at: validated before anything is written
                return 400, f"{err}\n".encode()
            if dispatches:
                try:
                    self.ledger.append(dispatches)
                except sqlite3.Error as err:
                    log.error("audit ledger write failed: %s", err)
                    return 500, b"audit ledger write failed\n"  # Alertmanager retries the delivery
            for dispatch in dispatches:
                outage = self._continued(dispatch)
                self.state.apply(dispatch)
                self._note(dispatch)
                self._track(dispatch, outage)
            for reason, alerts in rejected.items():
                self.state.reject(reason, len(alerts))
        if rejected:
            reason, alerts = next(iter(rejected.items()))
            log.warning("audit webhook: %d alert(s) of receiver %.80r not recorded, e.g. customer=%.80r "
                        "service=%.40r target=%.80r (%s): not in the inventory this exporter runs",
                        sum(len(a) for a in rejected.values()), payload.receiver, *alerts[0], reason)
        if self._on_record is not None:
            self._on_record()
        answer: dict[str, int] = {"recorded": len(dispatches)}
        if rejected:
            answer["rejected"] = sum(len(a) for a in rejected.values())
        return 200, json.dumps(answer).encode() + b"\n"

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        assert self._token is not None
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, credentials = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token)

    def _dispatches(self, payload: Payload, dispatched_at: float
                    ) -> tuple[list[Dispatch], dict[str, list[tuple[str, str, str]]]]:
        """The delivery's rows, and the alerts left out by reason; PayloadError for an impossible time."""
        out: list[Dispatch] = []
        rejected: dict[str, list[tuple[str, str, str]]] = {}
        seen_in_payload: set[tuple[str, str, str, float]] = set()
        for i, alert in enumerate(payload.alerts):
            customer_id = alert.labels.get("customer") or payload.receiver.removeprefix(RECEIVER_PREFIX)
            determined_at = _determined_at(alert, i, dispatched_at)
            service, target = alert.labels.get("service", ""), alert.labels.get("target", "")
            try:
                customer = self._inventory.customer(customer_id)
            except KeyError:
                customer = None
            # Only what the inventory has becomes a row (and so a series): 2,400 invented targets in one post
            # were 2,400 new series. The generated config routes a customer's alerts to its own receiver only.
            reason = ("unknown_customer" if customer is None
                      else "unknown_target" if (customer_id, service, target) not in self._targets
                      else "wrong_receiver" if payload.receiver != RECEIVER_PREFIX + customer_id else None)
            if reason is not None or customer is None:
                rejected.setdefault(reason or "unknown_customer", []).append((customer_id, service, target))
                continue
            resolved = alert.status == "resolved"
            outage = outage_key(customer_id, service, target, determined_at) if determined_at is not None else None
            if outage is not None:
                outage = self._continued(_Arrival(outage, alert.starts_at, resolved))
            first = (not resolved and outage is not None and outage not in seen_in_payload
                     and not self.state.is_counted(outage))
            # Within the clock-skew allowance a dispatch may stamp a hair before its determination: delay 0.
            delay = max(0.0, dispatched_at - determined_at) if first and determined_at is not None else None
            deadline = customer.notification_deadline
            if first and outage is not None:
                seen_in_payload.add(outage)
            out.append(Dispatch(
                dispatched_at=dispatched_at,
                receiver=payload.receiver,
                fingerprint=alert.fingerprint,
                alertname=alert.labels.get("alertname", ""),
                customer=customer_id,
                service=service,
                target=target,
                determined_at=determined_at,
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
                resolved=resolved,
                contact_version=customer.contacts.version,
                deadline=deadline,
                delay=delay,
                first=first,
                # A miss already decided for this outage makes its first dispatch late, whatever the
                # arithmetic says at the edge (one fact, the ledger's misses row).
                late=bool(first and outage is not None and (
                    self.state.is_missed(outage)
                    or (delay is not None and deadline is not None and delay > deadline))),
                group_key=payload.group_key,
            ))
        return out, rejected


@dataclass(frozen=True)
class _Arrival:
    """What `_continued` reads of a dispatch, before the dispatch is built."""
    outage: Outage
    starts_at: str
    resolved: bool


def _starts_at(raw: str) -> float | None:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _earliest(times: Iterable[float | None]) -> float | None:
    return min((t for t in times if t is not None), default=None)


# What the alert rule writes ({{ printf "%.3f" $value }}), with an exponent allowed for hand-made rules;
# "inf", "nan", "0x..." and signs are not times.
_TIME_RE = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?(?:[eE]\+?[0-9]{1,3})?")


def _determined_at(alert: _Alert, index: int, dispatched_at: float) -> float | None:
    """The alert's determined_at, None when it has none; PayloadError (the delivery is refused with 400, and
    ThreeninesNotificationOverdue still pages for the outage) when it is not a possible determination time."""
    raw = alert.annotations.get("determined_at")
    if raw is None:
        return None
    where = f"alerts[{index}].annotations.determined_at {raw[:40]!r}"
    if not _TIME_RE.fullmatch(raw.strip()):
        raise PayloadError(f"{where} is not a Unix time in seconds such as 1767225600.000")
    value = float(raw)
    problem = determination_problem(value, dispatched_at)
    if problem is not None:
        raise PayloadError(f"{where} {problem}")
    return value

