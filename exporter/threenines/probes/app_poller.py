"""Run the inventory's application checks on their contract cadence and feed each result to the contract.

One task keeps the schedule (a heap of due times; checks spread over their interval by a stable hash of the
customer and check id, due at `due + interval`, missed slots skipped rather than bunched) and starts a task per
check run; a semaphore bounds how many run at once and each run is inside its check's timeout, so a slow
application only ever delays itself, and the pings run on their own scheduler untouched. A result goes to
`observe(TargetKey(customer, "application", id), at, ok)` — the same contract state machine as a ping — and
into a status that one dict assignment replaces, which the collector reads without I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from threenines.config.applications import ApplicationCheck
from threenines.config.inventory import Inventory, Observer, TargetKey
from threenines.probes.app_checks import AppProber, CheckResult

log = logging.getLogger(__name__)

SERVICE = "application"


@dataclass(frozen=True)
class CheckStatus:
    customer: str
    check: ApplicationCheck
    runs: int = 0
    failures: tuple[tuple[str, int], ...] = ()  # reason → count since start (failures and no-evidence reasons)
    duration: float | None = None  # of the last run
    cert_not_after: float | None = None  # from the last run that saw a certificate
    last_at: float = 0.0


def applications_of(inventory: Inventory) -> tuple[tuple[str, ApplicationCheck], ...]:
    return tuple((c.id, check) for c in inventory.customers for check in c.applications)


class ApplicationPoller:
    def __init__(self, inventory: Inventory, observe: Observer, clock: Callable[[], float] = time.time,
                 max_concurrency: int = 256) -> None:
        self._observe = observe
        self._clock = clock
        self._max_concurrency = max_concurrency
        self._prober = AppProber()
        self.checks = applications_of(inventory)
        # Keys are fixed here; a run replaces its value in one assignment, so a scrape iterates safely.
        self._status: dict[tuple[str, str], CheckStatus] = {
            (customer, check.id): CheckStatus(customer, check) for customer, check in self.checks}

    def statuses(self) -> list[CheckStatus]:
        return list(self._status.values())

    async def check_once(self, customer: str, check: ApplicationCheck,
                         slots: asyncio.Semaphore | None = None) -> CheckResult:
        """Run one check now (within its timeout, once a slot is free), observe and publish the result."""
        async with slots if slots is not None else contextlib.nullcontext():
            result = await self._prober.run(check)
        at = self._clock()
        self._observe(TargetKey(customer, SERVICE, check.id), at, result.ok)
        key = (customer, check.id)
        old = self._status[key]
        failures = dict(old.failures)
        if result.reason:
            failures[result.reason] = failures.get(result.reason, 0) + 1
            log.info("application check customer=%s check=%s failed reason=%s", customer, check.id, result.reason)
        self._status[key] = CheckStatus(
            customer, check, old.runs + 1, tuple(sorted(failures.items())), result.duration,
            result.cert_not_after if result.cert_not_after is not None else old.cert_not_after, at)
        return result

    @staticmethod
    def offset(customer: str, check_id: str, interval: float) -> float:
        return interval * (zlib.crc32(f"{customer}/{check_id}".encode()) / 2**32)

    async def run(self, stop: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self._max_concurrency)
        start = time.monotonic()
        heap = [(start + self.offset(customer, check.id, check.policy.interval), index)
                for index, (customer, check) in enumerate(self.checks)]
        heapq.heapify(heap)
        running: dict[int, asyncio.Task[CheckResult]] = {}
        try:
            while not stop.is_set():
                delay = heap[0][0] - time.monotonic() if heap else None
                if delay is None or delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                due, index = heapq.heappop(heap)
                customer, check = self.checks[index]
                if index not in running:  # still running (waiting for a slot): this slot is skipped
                    task = asyncio.create_task(self.check_once(customer, check, slots),
                                               name=f"application-{customer}-{check.id}")
                    running[index] = task
                    task.add_done_callback(functools.partial(self._finished, running, index))
                interval = check.policy.interval
                due += interval
                late = time.monotonic() - due
                if late > 0:  # skip the slots already missed rather than bursting to catch up
                    due += math.ceil(late / interval) * interval
                heapq.heappush(heap, (due, index))
        finally:
            tasks = list(running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _finished(running: dict[int, asyncio.Task[CheckResult]], index: int, task: asyncio.Task[CheckResult]) -> None:
        running.pop(index, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("application check %d failed unexpectedly", index, exc_info=task.exception())
