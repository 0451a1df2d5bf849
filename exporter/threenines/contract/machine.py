"""The contract state machine (docs/design.md §1), per target, and its exact union per customer and service.

Time is injected: every method takes explicit Unix timestamps, so tests replay months in milliseconds. The
timestamps are the exporter's anchored clock (clock.py): they advance with monotonic time, so a difference of two
is elapsed time; when the stamps are moved onto a stepped system clock, `rebase` moves the machine's state with
them.

Accounting partitions wall time into four buckets: up, outage, unknown, and *pending* — the time since the
first failed probe of a run that has not yet either recovered (→ up: a flap shorter than the threshold counts
nothing) or reached the threshold (→ outage, retroactive to the first failed probe). Evidence older than the
horizon (1.5 × interval by default) makes time unknown and breaks a failure run: failures separated by a gap
in evidence are not "consecutive". A failed observation may date its failure earlier (`failed_since`, the power
rule's moment): the run then starts there, but never before the time already accounted (§1, "A failure the
evidence dates earlier").
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from threenines.config.inventory import TargetKey


class Bucket(enum.IntEnum):
    # Ordered by precedence in the customer-level union: any outage wins, then unknown, then up.
    UP = 0
    UNKNOWN = 1
    OUTAGE = 2


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    bucket: Bucket


@dataclass(frozen=True)
class OutageEvent:
    """What the ledger records: an outage determined, an open outage ended, or a gap in an open outage's
    evidence ([gap_start, at): the exporter was not running or had no fresh probe; unknown, not outage)."""

    kind: str  # "determined" | "ended" | "gap"
    key: TargetKey
    at: float
    first_failed_at: float
    determined_at: float
    end_reason: str = ""  # "recovered" | "removed" for kind == "ended"
    gap_start: float = 0.0  # for kind == "gap"


@dataclass(frozen=True)
class Checkpoint:
    """Recovery state persisted across restarts (see ledger.py)."""

    open_outage: tuple[float, float] | None  # (first_failed_at, determined_at) of an outage still open
    fail_start: float | None  # first failed probe of an undetermined run
    fail_count: int
    last_probe_at: float | None
    pending: tuple[tuple[float, float], ...]  # time held as pending, not yet resolved


class TargetView(NamedTuple):
    # NamedTuple, not a frozen dataclass: a snapshot builds one per target per tick (50k+), 3x cheaper.
    key: TargetKey
    up: bool
    known: bool
    outage_seconds: float
    unknown_seconds: float
    determined_at: float | None
    outage_start: float | None


class CustomerServiceView(NamedTuple):
    customer: str
    service: str
    up: bool
    known: bool
    outage_seconds: float
    unknown_seconds: float
    up_seconds: float
    counted_until: float


EventSink = Callable[[OutageEvent], None]
CheckpointSink = Callable[[TargetKey, Checkpoint | None], None]


class TargetMachine:
    """One target's contract state. Feed it observations in time order; read counters and segments.

    Two clocks of evidence: `last_evidence` classifies time (None after a restart: not watched = unknown),
    `last_probe_at` keeps a failure run consecutive across a quick restart.
    """

    # One per target, tens of thousands of them, touched by every probe: no per-instance dict.
    __slots__ = ("_on_checkpoint", "_on_event", "_view", "accrued_to", "determined_at", "down", "fail_count",
                 "fail_start", "frame_lead", "gap_start", "horizon", "key", "last_evidence", "last_probe_at",
                 "outage_seconds", "outage_start", "pending", "removed", "segments", "threshold",
                 "unknown_seconds", "up_seconds")

    def __init__(
        self,
        key: TargetKey,
        threshold: int,
        horizon: float,
        start: float,
        on_event: EventSink | None = None,
        on_checkpoint: CheckpointSink | None = None,
    ) -> None:
        self.key = key
        self.removed = False  # left the inventory (end): no more evidence
        self.threshold = threshold
        self.horizon = horizon
        self._on_event = on_event or (lambda event: None)
        self._on_checkpoint = on_checkpoint or (lambda key, cp: None)
        self.accrued_to = start
        self.last_evidence: float | None = None
        self.last_probe_at: float | None = None
        self.fail_count = 0
        self.fail_start: float | None = None
        self.pending: list[tuple[float, float]] = []
        self.down = False
        self.determined_at: float | None = None
        self.outage_start: float | None = None
        self.gap_start: float | None = None  # where the open outage's current stretch without evidence began
        # How far the open outage's own stamps run ahead of this machine's, after the stamps were moved back
        # (rebase): its end and gaps stay in the frame of its start, so it can never end before it began.
        self.frame_lead = 0.0
        self.up_seconds = 0.0
        self.outage_seconds = 0.0
        self.unknown_seconds = 0.0
        # Final outage/unknown segments not yet consumed by the union; final time they do not cover is up.
        self.segments: deque[Segment] = deque()
        self._view: TargetView | None = None  # rebuilt only when an exported value changed

    # -- restart --------------------------------------------------------------------------------------

    def resume(self, checkpoint: Checkpoint, now: float) -> None:
        """Restore state saved by a previous process that was alive until `accrued_to`; we restart at `now`.

        The time we were not running is unknown. An open outage stays open (one ledger row, not two) and
        counts again from the next probe. A failure run stays alive while its last probe is within the
        horizon, so "consecutive" keeps its meaning across a quick restart.
        """
        alive_until = self.accrued_to
        if checkpoint.open_outage is not None:
            self.down = True
            self.outage_start, self.determined_at = checkpoint.open_outage
        elif checkpoint.fail_start is not None and checkpoint.last_probe_at is not None:
            self.fail_start = checkpoint.fail_start
            self.fail_count = checkpoint.fail_count
            self.last_probe_at = checkpoint.last_probe_at
            self.last_evidence = checkpoint.last_probe_at
            self.pending = [piece for piece in checkpoint.pending if piece[1] > piece[0]]
            # The checkpoint was written at the last failed probe; the previous process went on holding
            # that time as pending while its evidence was fresh, until it stopped.
            tail_start = self.pending[-1][1] if self.pending else checkpoint.last_probe_at
            fresh_end = min(alive_until, checkpoint.last_probe_at + self.horizon)
            if fresh_end > tail_start:
                self.pending.append((tail_start, fresh_end))
            self.accrued_to = max(tail_start, fresh_end)
        self._accrue(self.accrued_to, now, Bucket.UNKNOWN)

    # -- observations ---------------------------------------------------------------------------------

    def observe(self, at: float, ok: bool | None, failed_since: float | None = None) -> None:
        """A probe result at `at`: True answered, False failed, None no evidence (could not probe).

        `failed_since` (with ok False): the evidence seen at `at` says the failure began earlier, at that
        instant (the power rule's exhaustion moment). When this observation starts a failure run, the run
        starts there — but never before the time already accounted (`accrued_to`): seconds already counted
        as up or unknown stay so, since the union may have folded them and a counter never goes down. The
        seconds from the run's start to `at` are pending, like any run's; the run's freshness is judged from
        `at`, the moment of the evidence. Inside a run or an open outage it changes nothing.
        """
        if self.observe_up(at, ok):
            return
        run_start = None
        if ok is False and failed_since is not None and not self.down and failed_since < at:
            start = max(failed_since, self.accrued_to)
            if start < at:
                self.advance(start)  # up to the run's start, as the earlier evidence says (it may end a stale run)
                if not self.fail_count:
                    self._accrue(start, at, None)  # pending: held like any run's time since its first failure
                    run_start = start
        self.advance(at)
        if ok is None:
            return
        if self.last_evidence is None or at > self.last_evidence + self.horizon:
            self._view = None  # known again
        self.last_evidence = at
        self.last_probe_at = at
        if self.gap_start is not None:
            self._end_gap(at)
        if ok:
            if self.fail_count:
                self._resolve_pending_as_up()
            if self.down:
                self._end_outage(at, "recovered")
            return
        if self.down:
            return
        self.fail_count += 1
        if self.fail_count == 1:
            self.fail_start = at if run_start is None else run_start
        if self.fail_count >= self.threshold:
            self._determine(at)
        else:
            self._on_checkpoint(self.key, self.checkpoint())

    def observe_up(self, at: float, ok: bool | None) -> bool:
        """The common case, in a few operations: an answer while up, no failure run, evidence fresh.

        Exactly what `observe` does then (the time since the last probe is up, nothing exported changes);
        returns False, doing nothing, in every other case.
        """
        last = self.last_evidence
        if (ok is not True or self.fail_count or self.down or last is None or at > last + self.horizon
                or at <= self.accrued_to):
            return False
        self.up_seconds += at - self.accrued_to
        self.accrued_to = self.last_evidence = self.last_probe_at = at
        return True

    def advance(self, now: float) -> None:
        """Classify [accrued_to, now) from the latest evidence."""
        if now <= self.accrued_to:
            return
        if self.fail_count and self.last_probe_at is not None and self.last_probe_at + self.horizon < now:
            # Evidence went stale mid-run: the run can no longer reach the threshold consecutively.
            self._accrue_classified(max(self.accrued_to, self.last_probe_at + self.horizon))
            self._resolve_pending_as_up()
        self._accrue_classified(now)

    def end(self, at: float, reason: str) -> None:
        """The target leaves the inventory: close an open outage, resolve pending time. Evidence that still
        arrives for it (a probe in flight) is dropped (`removed`)."""
        self.removed = True
        self.advance(at)
        if self.fail_count:
            self._resolve_pending_as_up()
        if self.down:
            self._end_outage(at, reason)

    def rebase(self, shift: float, at: float) -> None:
        """The exporter's stamps were moved by `shift` at `at` (the stamp of that moment, before the move).

        Every time held in memory moves with them, so no duration, pending run or staleness includes the step.
        What is recorded keeps its stamps: an open outage's start and determination are its ledger key and its
        alert's annotation. Its later stamps (gaps, end) stay in its own frame when the stamps moved back; when
        they moved forward past that frame, the stretch they skipped is recorded as a gap (no time passed in
        it, so none of it is outage) and the outage goes on in the corrected stamps.
        """
        self.advance(at)  # the time up to the move is classified in the stamps it passed in
        self.accrued_to += shift
        if self.last_evidence is not None:
            self.last_evidence += shift
        if self.last_probe_at is not None:
            self.last_probe_at += shift
        if self.fail_start is not None:
            self.fail_start += shift
        self.pending = [(start + shift, end + shift) for start, end in self.pending]
        if self.segments:
            self.segments = deque(Segment(s.start + shift, s.end + shift, s.bucket) for s in self.segments)
        if self.down:
            lead = self.frame_lead - shift
            if lead < 0.0:
                if self.gap_start is None:  # (an open gap already covers the skipped stretch when it ends)
                    skipped_from = at + self.frame_lead
                    self._emit_gap(skipped_from, skipped_from - lead)
                lead = 0.0
            self.frame_lead = lead
        if self.fail_count:
            self._on_checkpoint(self.key, self.checkpoint())  # a restart resumes the run in the moved stamps

    # -- views ----------------------------------------------------------------------------------------

    @property
    def known(self) -> bool:
        return self.last_evidence is not None and self.accrued_to <= self.last_evidence + self.horizon

    @property
    def pending_seconds(self) -> float:
        return sum(end - start for start, end in self.pending)

    @property
    def finalized_until(self) -> float:
        return self.pending[0][0] if self.pending else self.accrued_to

    def view(self) -> TargetView:
        """The exported state; the same object while nothing exported changed (the renderer relies on it)."""
        if self._view is None:
            self._view = TargetView(
                key=self.key,
                up=not self.down,
                known=self.known,
                outage_seconds=self.outage_seconds,
                unknown_seconds=self.unknown_seconds,
                determined_at=self.determined_at if self.down else None,
                outage_start=self.outage_start if self.down else None,
            )
        return self._view

    def checkpoint(self) -> Checkpoint:
        open_outage = (self.outage_start, self.determined_at) if self.down else None
        return Checkpoint(
            open_outage=open_outage,  # type: ignore[arg-type]
            fail_start=self.fail_start if self.fail_count else None,
            fail_count=self.fail_count,
            last_probe_at=self.last_probe_at,
            pending=tuple(self.pending),
        )

    # -- internals ------------------------------------------------------------------------------------

    def _accrue_classified(self, end: float) -> None:
        start = self.accrued_to
        if end <= start:
            return
        fresh_until = self.last_evidence + self.horizon if self.last_evidence is not None else start
        if fresh_until > start:
            self._accrue(start, min(end, fresh_until), self._current_bucket())
        if end > fresh_until:
            self._accrue(max(start, fresh_until), end, Bucket.UNKNOWN)

    def _current_bucket(self) -> Bucket | None:
        if self.down:
            return Bucket.OUTAGE
        if self.fail_count:
            return None  # pending
        return Bucket.UP

    def _accrue(self, start: float, end: float, bucket: Bucket | None) -> None:
        if end <= start:
            return
        if bucket is None:
            if self.pending and self.pending[-1][1] == start:
                self.pending[-1] = (self.pending[-1][0], end)
            else:
                self.pending.append((start, end))
        else:
            self._add(bucket, end - start)
            self._emit(start, end, bucket)
            if bucket is Bucket.UNKNOWN and self.down and self.gap_start is None:
                # The outage goes on, but these seconds are not outage: the ledger says so (in the outage's frame).
                self.gap_start = start + self.frame_lead
        self.accrued_to = end

    def _add(self, bucket: Bucket, seconds: float) -> None:
        if bucket is Bucket.UP:
            self.up_seconds += seconds
            return
        if bucket is Bucket.OUTAGE:
            self.outage_seconds += seconds
        else:
            self.unknown_seconds += seconds
        self._view = None

    def _emit(self, start: float, end: float, bucket: Bucket) -> None:
        if bucket is Bucket.UP:
            return  # time no segment covers is up: the common case allocates nothing
        last = self.segments[-1] if self.segments else None
        if last is not None and last.bucket is bucket and last.end == start:
            self.segments[-1] = Segment(last.start, end, bucket)
        else:
            self.segments.append(Segment(start, end, bucket))

    def _resolve_pending(self, bucket: Bucket) -> None:
        for start, end in self.pending:
            self._add(bucket, end - start)
            self._emit(start, end, bucket)
        self.pending = []
        self.fail_count = 0
        self.fail_start = None
        self._on_checkpoint(self.key, None)

    def _resolve_pending_as_up(self) -> None:
        self._resolve_pending(Bucket.UP)

    def _determine(self, at: float) -> None:
        assert self.fail_start is not None
        first_failed_at = self.fail_start
        self._resolve_pending(Bucket.OUTAGE)
        self.down = True
        self.determined_at = at
        self.outage_start = first_failed_at
        self._view = None
        self._on_event(OutageEvent("determined", self.key, at, first_failed_at, at))

    def _end_gap(self, at: float) -> None:
        assert self.gap_start is not None
        self._emit_gap(self.gap_start, at + self.frame_lead)
        self.gap_start = None

    def _emit_gap(self, start: float, end: float) -> None:
        """A gap [start, end) of the open outage, in the outage's stamps."""
        assert self.outage_start is not None and self.determined_at is not None
        if end > start:
            self._on_event(OutageEvent("gap", self.key, end, self.outage_start, self.determined_at,
                                       gap_start=start))

    def _end_outage(self, at: float, reason: str) -> None:
        assert self.outage_start is not None and self.determined_at is not None
        if self.gap_start is not None:
            self._end_gap(at)
        self._on_event(OutageEvent("ended", self.key, at + self.frame_lead, self.outage_start, self.determined_at,
                                   reason))
        self.down = False
        self.determined_at = None
        self.outage_start = None
        self.frame_lead = 0.0
        self._view = None


class ServiceUnion:
    """A customer's service is in outage while any target is; unknown while none is down and any is unknown.

    Computed exactly from the targets' final segments up to the slowest target's watermark, so overlapping
    outages are counted once and nothing is ever revised. Time no member's segment covers is up, including
    time before a member joined the inventory: a port not yet under contract cannot make the service unknown.
    """

    def __init__(self, customer: str, service: str, start: float) -> None:
        self.customer = customer
        self.service = service
        self.counted_until = start
        self.up_seconds = 0.0
        self.outage_seconds = 0.0
        self.unknown_seconds = 0.0

    def consume(self, machines: Iterable[TargetMachine]) -> None:
        members = list(machines)
        if not members:
            return
        if len(members) == 1:
            self._consume_one(members[0])
            return
        watermark = min(m.finalized_until for m in members)
        if watermark <= self.counted_until:
            return
        points = {self.counted_until, watermark}
        for machine in members:
            for segment in machine.segments:
                if self.counted_until < segment.start < watermark:
                    points.add(segment.start)
                if self.counted_until < segment.end < watermark:
                    points.add(segment.end)
        edges = sorted(points)
        for start, end in itertools.pairwise(edges):
            bucket = max(self._bucket_at(m, start) for m in members)
            seconds = end - start
            if bucket is Bucket.OUTAGE:
                self.outage_seconds += seconds
            elif bucket is Bucket.UNKNOWN:
                self.unknown_seconds += seconds
            else:
                self.up_seconds += seconds
        self.counted_until = watermark
        for machine in members:
            # Resolved pending time is emitted after later segments, so the deque is not in time order.
            if any(segment.end <= watermark for segment in machine.segments):
                machine.segments = deque(s for s in machine.segments if s.end > watermark)

    def _consume_one(self, machine: TargetMachine) -> None:
        """One member: the union is that member's final time, taken as deltas since the last call."""
        watermark = machine.finalized_until
        if watermark <= self.counted_until:
            return
        covered = 0.0
        for segment in machine.segments:
            start, end = max(segment.start, self.counted_until), min(segment.end, watermark)
            if end <= start:
                continue
            covered += end - start
            if segment.bucket is Bucket.OUTAGE:
                self.outage_seconds += end - start
            else:
                self.unknown_seconds += end - start
        self.up_seconds += watermark - self.counted_until - covered
        self.counted_until = watermark
        if any(segment.end > watermark for segment in machine.segments):
            machine.segments = deque(s for s in machine.segments if s.end > watermark)
        else:
            machine.segments.clear()

    def rebase(self, shift: float) -> None:
        """The stamps were moved by `shift` (its members' `rebase`): the watermark moves with them."""
        self.counted_until += shift

    @staticmethod
    def _bucket_at(machine: TargetMachine, instant: float) -> Bucket:
        for segment in machine.segments:
            if segment.start <= instant < segment.end:
                return segment.bucket
        return Bucket.UP

    def view(self, members: Iterable[TargetMachine]) -> CustomerServiceView:
        machines = list(members)
        down = [m for m in machines if m.down]
        known = any(m.known for m in down) if down else bool(machines) and all(m.known for m in machines)
        return CustomerServiceView(
            customer=self.customer,
            service=self.service,
            up=not down,
            known=known,
            outage_seconds=self.outage_seconds,
            unknown_seconds=self.unknown_seconds,
            up_seconds=self.up_seconds,
            counted_until=self.counted_until,
        )
