"""Two replica exporters, one message per contact and outage event: the delivery claim, checked against the peer.

Alertmanager's customer receiver posts to both replicas' `/alertmanager/deliver` (so either one alone still
delivers), and both owe every notice. Before an attempt, a replica asks its peer (`POST /alertmanager/peer`,
the audit token) who holds the notice:

* the peer holds nothing for it → the peer records the asker as holder and says so; the asker sends.
* the peer already holds it, or delivered it → the asker defers (no attempt, asks again in RECHECK seconds) or
  records the peer's acceptance as its own evidence, `… (delivered by <vantage>)`.
* both asked at once → both apply the same deterministic choice (`winner`: a hash of the notice and the two
  vantage names, so the load spreads), and only one sends.
* the peer is unreachable (down, partitioned, refusing the token) → the asker sends: at least once beats none.

After an acceptance the sender pushes it to the peer, which writes it into its own delivery ledger (inserting the
notice if Alertmanager's post never reached it), so each ledger holds the delivery and the loss of either node
keeps the proof. A deferring replica that finds its peer gone takes the notice over and delivers it. The holder
is in memory only: a restarted replica asks again before sending, and its peer still knows.
docs/alerting.md ("HA") says why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from threenines.ledgers.delivery import NoticeRow
from threenines.notify import http

PEER_PATH = "/alertmanager/peer"
PEER_TIMEOUT = 3.0  # an unanswered question is an unreachable peer: the asker sends
RECHECK = 5.0  # a deferring replica asks its peer again this often (and takes over when the peer is gone)
MAX_BODY = 64 * 1024
_TEXT_FIELDS = ("customer", "service", "target", "event", "contact", "channel", "contact_version", "facts")


class PeerError(Exception):
    """No usable answer from the peer (never holds a secret)."""


@dataclass(frozen=True)
class Acceptance:
    started_at: float
    finished_at: float
    receipt: str


@dataclass(frozen=True)
class PeerAnswer:
    vantage: str
    holder: str
    accepted: Acceptance | None


def winner(key: tuple[object, ...], a: str, b: str) -> str:
    """Who sends when both replicas claim a notice at the same moment: the same answer on both sides."""
    def rank(vantage: str) -> str:
        return hashlib.sha256(f"{key!r}/{vantage}".encode()).hexdigest()
    return min((a, b), key=lambda v: (rank(v), v))


def _row_document(row: NoticeRow) -> dict[str, object]:
    return {"received_at": row.received_at, "determined_at": row.determined_at,
            **{name: getattr(row, name) for name in _TEXT_FIELDS}}


def _acceptance_document(acceptance: Acceptance | None) -> dict[str, object] | None:
    if acceptance is None:
        return None
    return {"started_at": acceptance.started_at, "finished_at": acceptance.finished_at,
            "receipt": acceptance.receipt}


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive Unix time")
    return float(value)


def _acceptance(value: object) -> Acceptance | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("receipt"), str):
        raise ValueError("accepted must be null or {started_at, finished_at, receipt}")
    return Acceptance(_number(value.get("started_at"), "accepted.started_at"),
                      _number(value.get("finished_at"), "accepted.finished_at"), value["receipt"][:500])


def parse_request(body: bytes) -> tuple[str, NoticeRow, Acceptance | None]:
    """A peer's question → (its vantage, the notice, its acceptance or None); ValueError says what is wrong."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("from"), str) or not isinstance(data.get("notice"), dict):
        raise ValueError("expected {from, notice, accepted}")
    notice = data["notice"]
    texts = {name: notice.get(name) for name in _TEXT_FIELDS}
    if not all(isinstance(v, str) and v for k, v in texts.items() if k != "contact_version") or \
            not isinstance(texts["contact_version"], str) or texts["event"] not in ("firing", "resolved"):
        raise ValueError("notice: every field a string, event firing or resolved")
    row = NoticeRow(received_at=_number(notice.get("received_at"), "notice.received_at"),
                    determined_at=_number(notice.get("determined_at"), "notice.determined_at"),
                    **texts)
    return data["from"], row, _acceptance(data.get("accepted"))


def answer_document(vantage: str, holder: str, accepted: Acceptance | None) -> bytes:
    return json.dumps({"vantage": vantage, "holder": holder, "accepted": _acceptance_document(accepted)}).encode()


class PeerLink:
    """The client side: one question to the peer replica, bounded by the caller (PEER_TIMEOUT)."""

    def __init__(self, url: str, vantage: str, token: Callable[[], str | None]) -> None:
        self.url = url.rstrip("/") + PEER_PATH
        self.vantage = vantage
        self._token = token  # read at every question: a reload may have changed it

    async def ask(self, row: NoticeRow, accepted: Acceptance | None) -> PeerAnswer:
        body = json.dumps({"from": self.vantage, "notice": _row_document(row),
                           "accepted": _acceptance_document(accepted)}).encode()
        headers = {"Content-Type": "application/json"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = await http.post(self.url, body, headers)
        except http.HttpError as err:
            raise PeerError(f"{err.reason}: {err.detail}") from None
        if reply.status != 200:
            raise PeerError(f"HTTP {reply.status} from {self.url}")  # 401: the replicas' tokens differ
        try:
            data = json.loads(reply.body)
            if not isinstance(data, dict) or not isinstance(data.get("holder"), str) or \
                    not isinstance(data.get("vantage"), str):
                raise ValueError("expected {vantage, holder, accepted}")
            return PeerAnswer(data["vantage"], data["holder"], _acceptance(data.get("accepted")))
        except ValueError as err:
            raise PeerError(f"not a peer's answer: {err}") from None


Claim = Callable[[str, NoticeRow, Acceptance | None], tuple[str, Acceptance | None]]


class PeerEndpoint:
    """`POST /alertmanager/peer`: the server side, for the other replica (same bearer token as the webhooks)."""

    def __init__(self, vantage: str, claim: Claim, token: Callable[[], str | None]) -> None:
        self._vantage, self._claim, self._token = vantage, claim, token

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        token = self._token()
        if token is not None:
            value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            scheme, _, credentials = value.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
                return 401, b"missing or wrong bearer token\n"
        if len(body) > MAX_BODY:
            return 413, b"a peer's question is small\n"
        try:
            sender, row, accepted = parse_request(body)
        except (ValueError, RecursionError) as err:
            return 400, f"not a peer's question: {err}\n".encode()
        if sender == self._vantage:
            return 400, b"the peer has this replica's own vantage name: give each replica its own --vantage\n"
        holder, mine = self._claim(sender, row, accepted)
        return 200, answer_document(self._vantage, holder, mine)
