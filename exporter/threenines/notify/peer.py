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

The same endpoint carries the replicas' determinations (`{from, runs}`): a replica that determined an outage tells
its peer the run (first failed probe, determination), and the peer answers with its own run of the same outage, if
any — so each replica's notification deadline counts from the earlier of the two determinations even when no page
brought it (threenines.alerting.deadlines).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from threenines.alerting.deadlines import Run
from threenines.ledgers.delivery import NoticeRow
from threenines.notify import http

PEER_PATH = "/alertmanager/peer"
PEER_TIMEOUT = 3.0  # an unanswered question is an unreachable peer: the asker sends
RECHECK = 5.0  # a deferring replica asks its peer again this often (and takes over when the peer is gone)
MAX_BODY = 64 * 1024
RUN_BATCH = 100  # runs per question: well inside MAX_BODY with ids of 200 characters
MAX_ID = 200
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


def _run_document(run: Run) -> dict[str, object]:
    return {"customer": run.customer, "service": run.service, "target": run.target,
            "first_failed_at": run.first_failed_at, "determined_at": run.determined_at}


def _run(value: object) -> Run | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("a run must be null or {customer, service, target, first_failed_at, determined_at}")
    customer, service, target = (value.get(k) for k in ("customer", "service", "target"))
    if not all(isinstance(n, str) and 0 < len(n) <= MAX_ID for n in (customer, service, target)):
        raise ValueError(f"a run's customer, service and target are strings of 1 to {MAX_ID} characters")
    first, determined = (_number(value.get(k), f"run.{k}") for k in ("first_failed_at", "determined_at"))
    if first > determined:
        raise ValueError("a run's first failed probe cannot follow its determination")
    return Run(str(customer), str(service), str(target), first, determined)


def parse_runs_request(data: dict[str, object]) -> tuple[str, list[Run]]:
    """A peer's runs (`{from, runs}`, already decoded) → (its vantage, the runs); ValueError says what is wrong."""
    sender, runs = data.get("from"), data.get("runs")
    if not isinstance(sender, str) or not isinstance(runs, list) or not 0 < len(runs) <= RUN_BATCH:
        raise ValueError(f"expected {{from, runs}} with 1 to {RUN_BATCH} runs")
    parsed = [_run(r) for r in runs]
    if any(r is None for r in parsed):
        raise ValueError("a question's runs are never null")
    return sender, [r for r in parsed if r is not None]


def runs_answer_document(vantage: str, runs: list[Run | None]) -> bytes:
    return json.dumps({"vantage": vantage,
                       "runs": [None if r is None else _run_document(r) for r in runs]}).encode()


class PeerLink:
    """The client side: one question to the peer replica, bounded by the caller (PEER_TIMEOUT)."""

    def __init__(self, url: str, vantage: str, token: Callable[[], str | None]) -> None:
        self.url = url.rstrip("/") + PEER_PATH
        self.vantage = vantage
        self._token = token  # read at every question: a reload may have changed it

    async def ask(self, row: NoticeRow, accepted: Acceptance | None) -> PeerAnswer:
        data = await self._question({"from": self.vantage, "notice": _row_document(row),
                                     "accepted": _acceptance_document(accepted)})
        try:
            if not isinstance(data, dict) or not isinstance(data.get("holder"), str) or \
                    not isinstance(data.get("vantage"), str):
                raise ValueError("expected {vantage, holder, accepted}")
            return PeerAnswer(data["vantage"], data["holder"], _acceptance(data.get("accepted")))
        except ValueError as err:
            raise PeerError(f"not a peer's answer: {err}") from None

    async def share_runs(self, runs: list[Run]) -> list[Run | None]:
        """Tell the peer these runs (at most RUN_BATCH); it answers with its own run of each one's outage, or None.
        A peer from before the runs answers 400: a PeerError, as an unreachable one."""
        data = await self._question({"from": self.vantage, "runs": [_run_document(r) for r in runs]})
        try:
            answers = data.get("runs") if isinstance(data, dict) else None
            if not isinstance(answers, list) or len(answers) != len(runs):
                raise ValueError("expected {vantage, runs} with one answer per run")
            return [_run(a) for a in answers]
        except ValueError as err:
            raise PeerError(f"not a peer's answer: {err}") from None

    async def _question(self, question: dict[str, object]) -> object:
        headers = {"Content-Type": "application/json"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = await http.post(self.url, json.dumps(question).encode(), headers)
        except http.HttpError as err:
            raise PeerError(f"{err.reason}: {err.detail}") from None
        if reply.status != 200:
            raise PeerError(f"HTTP {reply.status} from {self.url}")  # 401: the replicas' tokens differ
        try:
            return json.loads(reply.body)
        except ValueError as err:
            raise PeerError(f"not a peer's answer: {err}") from None

Claim = Callable[[str, NoticeRow, Acceptance | None], tuple[str, Acceptance | None]]


Runs = Callable[[list[Run]], list[Run | None]]


class PeerEndpoint:
    """`POST /alertmanager/peer`: the server side, for the other replica (same bearer token as the webhooks)."""

    def __init__(self, vantage: str, claim: Claim, token: Callable[[], str | None], runs: Runs | None = None
                 ) -> None:
        self._vantage, self._claim, self._token = vantage, claim, token
        self._runs = runs  # threenines.alerting.deadlines.DeadlineWatch.peer_runs

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
            question = json.loads(body)
        except (ValueError, RecursionError) as err:
            return 400, f"not a peer's question: {err}\n".encode()
        if self._runs is not None and isinstance(question, dict) and "runs" in question:
            try:
                sender, runs = parse_runs_request(question)
            except ValueError as err:
                return 400, f"not a peer's question: {err}\n".encode()
            if sender == self._vantage:
                return 400, b"the peer has this replica's own vantage name: give each replica its own --vantage\n"
            return 200, runs_answer_document(self._vantage, self._runs(runs))
        try:
            sender, row, accepted = parse_request(body)
        except (ValueError, RecursionError) as err:
            return 400, f"not a peer's question: {err}\n".encode()
        if sender == self._vantage:
            return 400, b"the peer has this replica's own vantage name: give each replica its own --vantage\n"
        holder, mine = self._claim(sender, row, accepted)
        return 200, answer_document(self._vantage, holder, mine)
