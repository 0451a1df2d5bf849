"""Bytes per sample of the same month on Prometheus (promtool-backfilled, compacted block) and on VictoriaMetrics
(imported, flushed and merged), for docs/ha.md's sizing (about 2 minutes, so by hand, not in the suite):

    .venv/bin/python -m tests.ha.disk      # prints the figures docs/ha.md quotes
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import requests

from tests.ha.victoriametrics import victoriametrics, vm_import
from tests.promdata import Series, backfill, write_openmetrics


def du(path: Path, skip: Iterable[str] = ()) -> int:
    """Bytes of the files under path, without the top-level entries named in skip (e.g. Prometheus' wal)."""
    return sum(f.stat().st_size for f in path.rglob("*")
               if f.is_file() and f.relative_to(path).parts[0] not in set(skip))


def measure(series: list[Series], workdir: Path) -> dict[str, float]:
    samples = sum(len(s.samples) for s in series)
    workdir.mkdir(parents=True, exist_ok=True)
    tsdb = workdir / "tsdb"
    backfill(write_openmetrics(workdir / "data.om", series), tsdb, max_block_duration="1488h")
    prom = du(tsdb, skip=("wal", "chunks_head", "lock"))
    with victoriametrics(workdir / "vm", "-retentionPeriod=100y", "-dedup.minScrapeInterval=60s") as vm:
        vm_import(vm.url, series)
        # merge the parts into what a month at rest looks like (VictoriaMetrics merges in the background)
        requests.get(f"{vm.url}/internal/force_merge", timeout=600).raise_for_status()
        requests.get(f"{vm.url}/internal/force_flush", timeout=60).raise_for_status()
    victoria = du(vm.data, skip=("cache", "flock.lock", "snapshots"))
    return {"series": len(series), "samples": samples, "prometheus_bytes": prom, "victoriametrics_bytes": victoria,
            "prometheus_bytes_per_sample": prom / samples, "victoriametrics_bytes_per_sample": victoria / samples}


def port_month(ports: int, start: int, end: int, step: int = 60, seed: int = 19) -> list[Series]:
    """What an exporter exports per port, over a month: 13 series (docs/alerting.md), of which the RTT changes at
    every scrape (a float of microsecond resolution), the probe counters every 5 minutes (the contract's cadence),
    and the rest (up, known, determined, outage start, outage/unknown seconds, failures, ...) stay flat."""
    rng = random.Random(seed)
    # one scrape's timestamp for all series, off the grid by 0-20 ms as under load (Prometheus aligns only
    # within 2 ms): exact grids would flatter both engines' timestamp compression
    grid = [t + rng.randint(0, 20) / 1000 for t in range(start, end + 1, step)]
    out: list[Series] = []
    for port in range(ports):
        labels = {"customer": f"c{port:04d}", "service": "connectivity", "target": f"p{port}"}
        rtt = [(t, round(rng.lognormvariate(-7.0, 0.3), 6)) for t in grid]
        probes = [(t, int(t - start) // 300) for t in grid]
        out += [Series("threenines_probe_rtt_seconds", labels, rtt),
                Series("threenines_probes_total", labels, probes, "counter"),
                Series("threenines_probe_last_timestamp_seconds", labels, [(t, int(t) - int(t) % 300) for t in grid])]
        for name in ("up", "known", "determined_timestamp_seconds", "outage_start_timestamp_seconds",
                     "outage_seconds_total", "unknown_seconds_total", "failures_total", "excluded", "info",
                     "pending"):
            out.append(Series(f"threenines_port_{name}", labels, [(t, 1 if name in ("up", "known", "info") else 0)
                                                                  for t in grid]))
    return out


def main() -> int:
    from tests.report import monthgen
    from tests.report.test_truth import SCENARIO

    with tempfile.TemporaryDirectory() as tmp:
        billing = measure(monthgen.series(SCENARIO), Path(tmp) / "billing")
        ports = measure(port_month(8, SCENARIO.begin, SCENARIO.end), Path(tmp) / "ports")
    print(json.dumps({"truth month (billing series)": billing, "8 ports, 13 series each": ports}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
