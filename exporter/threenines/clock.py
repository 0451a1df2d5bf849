"""The exporter's clock: wall-clock stamps that advance with the monotonic clock, and steps of the system clock
detected, never followed silently.

A stamp is `wall_anchor + (monotonic() - mono_anchor)`. Between two anchors every duration taken from stamps — an
outage, pending or unknown stretch, a notification's delay — is elapsed time, whatever the system clock does (an NTP
step after a bad RTC, a VM restore, `date -s`). `check()` compares the stamps with the system clock, at each tick:
a difference of more than STEP_TOLERANCE that appeared since the last check is a step (counted, logged). The serve
process moves the stamps onto the corrected clock (`reanchor`) when nothing measured across the step is waiting,
and moves the contract engine's state by the same amount (docs/design.md, "Clock steps").

CLOCK_MONOTONIC is slewed by NTP like the wall clock but never stepped, so the two agree to microseconds between
steps. It stops while the host is suspended: a resume looks like a forward step of the sleep's length, and the
sleep, which no probe watched, is in no counter (Prometheus sees the scrape gap).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Less than this between the stamps and the system clock is read jitter or slewing, not a step.
STEP_TOLERANCE = 1.0
# A deviation is read between two monotonic reads; a pair further apart than this was preempted: read again.
_READ_SPREAD = 0.001
_READ_ATTEMPTS = 3


class AnchoredClock:
    """`clock()` is the exporter's "now" (Unix seconds). Read from any thread; checked and re-anchored on the loop."""

    __slots__ = ("_offset", "_seen", "_wall", "backward", "forward", "last_step", "monotonic", "tolerance")

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 tolerance: float = STEP_TOLERANCE) -> None:
        self._wall = wall
        self.monotonic = monotonic  # what schedules run on (the scheduler reads it; asyncio's loop.time() is it)
        self.tolerance = tolerance
        self._offset = 0.0  # one float, replaced whole: a reader in another thread sees the old or the new one
        self._offset = self.deviation()
        self._seen = 0.0  # the system clock minus the stamps, as of the last step seen (0 after a re-anchor)
        self.forward = 0  # steps seen, by direction
        self.backward = 0
        self.last_step = 0.0  # the size of the last step seen (seconds, + forward)

    def __call__(self) -> float:
        return self.monotonic() + self._offset

    def deviation(self) -> float:
        """The system clock minus the stamps, now: within microseconds of 0 unless the system clock stepped."""
        monotonic, wall = self.monotonic, self._wall
        best_spread, best = 0.0, 0.0
        for attempt in range(_READ_ATTEMPTS):
            before = monotonic()
            now = wall()
            after = monotonic()
            spread = after - before
            if attempt == 0 or spread < best_spread:
                best_spread, best = spread, now - ((before + after) / 2 + self._offset)
            if spread <= _READ_SPREAD:
                break
        return best

    def check(self) -> float | None:
        """A step of the system clock since the last check: its size in seconds (+ forward), once; else None."""
        deviation = self.deviation()
        step = deviation - self._seen
        if abs(step) <= self.tolerance:
            return None
        self._seen = deviation
        self.last_step = step
        if step > 0:
            self.forward += 1
        else:
            self.backward += 1
        return step

    @property
    def unapplied(self) -> float:
        """How far the stamps trail (+) or lead (−) the system clock after the steps seen; 0 once re-anchored."""
        return self._seen

    def reanchor(self, shift: float) -> None:
        """Move the stamps by `shift` (the `deviation()` just read): they follow the system clock again."""
        self._offset += shift
        self._seen = 0.0
