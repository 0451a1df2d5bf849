"""Where the exporter's CPU goes in ping_fleet's steady window: thread CPU time of each phase, per probe.

    .venv/bin/python bench/ping_phases.py                    # 16,700 ports, 100 s, two scrapers every 30 s
    .venv/bin/python bench/ping_phases.py --scrapers 0

Runs one exporter exactly as `ping_fleet.py --one` does and wraps the methods of each phase (the scheduler's
wake-up, sending, reading replies, folding results, the contract's batch of answers, the tick, a scrape's gzip)
with thread CPU clocks, counted only during the measured window. Thread CPU time is the scheduler's own account
(not sampled), kernel time of the phase's system calls included. Phases nest: the wake-up includes sending and
reading, reading includes folding, folding includes the contract's batch. Written to bench/results/ too. A
diagnostic, not a comparison: the ratios to the peers are ping_fleet.py's.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ping_fleet

from threenines.contract.engine import ContractEngine
from threenines.ledgers.outages import OutageLedger
from threenines.probes.ping import Pinger
from threenines.probes.ping_scheduler import ProbeScheduler
from threenines.serve.process import Exporter

PHASES: list[tuple[type, str]] = [
    (ProbeScheduler, "_pump"), (Pinger, "send_many"), (Pinger, "expire"), (Pinger, "drain"), (Pinger, "_readable"),
    (ProbeScheduler, "_finished"), (ContractEngine, "observe_tokens"), (Exporter, "_tick"), (ContractEngine, "tick"),
    (OutageLedger, "heartbeat"), (Exporter, "_publish"), (Exporter, "_exposition_gzip"),
]


class Window:
    """Counts only between the window's start (ping_fleet prints `window_s`) and the exporter's stop."""

    def __init__(self) -> None:
        self.on = False
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()
        self.process_cpu = 0.0
        self.probes = 0
        self._started_cpu = 0.0
        self._started_probes = 0

    def start(self, exporter_scheduler: Any) -> None:
        self.on = True
        self._started_cpu = time.process_time()
        self._started_probes = exporter_scheduler.probes_started if exporter_scheduler is not None else 0

    def stop(self, scheduler: Any) -> None:
        if self.on:
            self.on = False
            self.process_cpu = time.process_time() - self._started_cpu
            self.probes = scheduler.probes_started - self._started_probes

    def wrap(self, cls: type, name: str) -> None:
        method = getattr(cls, name)
        label = f"{cls.__name__}.{name}"

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return method(*args, **kwargs)
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.cpu[label] += time.thread_time() - started
                self.calls[label] += 1

        setattr(cls, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16700)
    parser.add_argument("--interval", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--scrape-interval", type=float, default=30.0)
    parser.add_argument("--scrapers", type=int, default=2)
    args = parser.parse_args()

    window = Window()
    for cls, name in PHASES:
        window.wrap(cls, name)
    exporters: list[Any] = []
    original_init, original_stop = Exporter.__init__, Exporter.stop

    def init(self: Any, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        exporters.append(self)

    def stop(self: Any) -> None:
        window.stop(self.scheduler)
        original_stop(self)

    Exporter.__init__ = init  # type: ignore[method-assign]
    Exporter.stop = stop  # type: ignore[method-assign]

    class Marker:  # ping_fleet prints {"window_s": ...} when its window starts
        def __init__(self, out: Any) -> None:
            self.out = out

        def write(self, text: str) -> int:
            if '"window_s"' in text and not window.on:
                window.start(exporters[0].scheduler if exporters else None)
            return self.out.write(text)

        def flush(self) -> None:
            self.out.flush()

    sys.stdout = Marker(sys.stdout)  # type: ignore[assignment]
    result = ping_fleet.run_exporter(args.size, args.interval, args.duration, args.scrape_interval,
                                     scrapers=args.scrapers)
    sys.stdout = sys.stdout.out  # type: ignore[attr-defined]
    probes = window.probes or result["probes"]
    phases = {label: {"cpu_s": round(cpu, 4), "us_per_probe": round(cpu / probes * 1e6, 2),
                      "calls": window.calls[label], "us_per_call": round(cpu / window.calls[label] * 1e6, 1)}
              for label, cpu in sorted(window.cpu.items(), key=lambda item: -item[1])}
    report = {"run": result, "window_process_cpu_s": round(window.process_cpu, 3),
              "window_us_per_probe": round(window.process_cpu / probes * 1e6, 2), "phases": phases}
    print(json.dumps(report, indent=1))
    ping_fleet.write_results("ping_phases", [report])


if __name__ == "__main__":
    main()
