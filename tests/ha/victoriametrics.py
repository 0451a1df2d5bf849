"""A real VictoriaMetrics (Debian's victoria-metrics) for tests: started on 127.0.0.1, fed through its own import
API, stopped by PID.

    victoriametrics(workdir, *flags) -> ctx of VM    single-node server over workdir/data on a free port
    vm_import(url, series)                            /api/v1/import (JSON lines, one line per series), then a
                                                      flush so that the samples are searchable at once

-search.disableCache: VictoriaMetrics caches query results per time range and would not see samples imported
after a first query of the same range (backfill is exactly that).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.promdata import Series
from tests.support import RunningProcess, free_port, running

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
IMPORT_BYTES = 8_000_000  # one POST of the import API: a few series of a month at 60 s


@dataclass
class VM:
    url: str
    process: RunningProcess
    data: Path


@contextlib.contextmanager
def victoriametrics(workdir: Path, *flags: str, timeout: float = 60.0) -> Iterator[VM]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = workdir / f"vm-{port}"
    argv = [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data}",
            "-search.disableCache", "-loggerLevel=WARN", *flags]
    url = f"http://127.0.0.1:{port}"
    with running(argv, workdir / f"victoria-metrics-{port}.log", ready_url=f"{url}/health", timeout=timeout) as proc:
        yield VM(url, proc, data)


# Samples per import line. VictoriaMetrics 1.79 reads the import body in 64 KiB blocks and fails a request
# ("cannot read vmimport data: no forward progress made") when the unfinished line carried from one block to the
# next fills the buffer exactly, which depends on how the body arrived (seen under load in CI with month-long
# lines). Lines of at most 1,000 samples (~35 KB) never fill it; a series may span lines, which it merges.
LINE_SAMPLES = 1_000


def _lines(one: Series) -> list[str]:
    return [json.dumps({"metric": {"__name__": one.name, **one.labels},
                        "values": [float(v) for _, v in part],
                        "timestamps": [round(t * 1000) for t, _ in part]}, separators=(",", ":"))
            for part in (one.samples[i:i + LINE_SAMPLES] for i in range(0, max(len(one.samples), 1), LINE_SAMPLES))]


def vm_import(url: str, series: Iterable[Series], timeout: float = 120.0) -> int:
    """Import series through /api/v1/import; returns the number of samples sent."""
    batch: list[str] = []
    size = sent = 0

    def post() -> None:
        response = requests.post(f"{url}/api/v1/import", data="\n".join(batch).encode() + b"\n", timeout=timeout)
        if response.status_code != 204:
            raise RuntimeError(f"VictoriaMetrics import failed: HTTP {response.status_code} {response.text[:500]}")

    for one in series:
        for line in _lines(one):
            batch.append(line)
            size += len(line)
        sent += len(one.samples)
        if size >= IMPORT_BYTES:
            post()
            batch, size = [], 0
    if batch:
        post()
    flushed = requests.get(f"{url}/internal/force_flush", timeout=timeout)
    if flushed.status_code != 200:
        raise RuntimeError(f"VictoriaMetrics force_flush: HTTP {flushed.status_code} {flushed.text[:200]}")
    return sent
