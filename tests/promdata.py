"""Historical data in a real Prometheus for tests: write samples, backfill a TSDB, serve it on 127.0.0.1.

The whole API (everything else here is private):

    Series(name, labels, samples, kind="gauge")   one time series; samples are (unix_seconds, value)
    write_openmetrics(path, series) -> Path        OpenMetrics text that promtool accepts
    backfill(openmetrics, tsdb, max_block_duration="744h")   promtool tsdb create-blocks-from openmetrics
    backfill_rules(url, rule_files, start, end, tsdb)   promtool tsdb create-blocks-from rules (needs a Prometheus)
    prometheus(tsdb, workdir) -> ctx of Prom       real /usr/bin/prometheus over tsdb on a free port, stopped by PID
    serve_series(series, workdir, rule_files=(), rules_start=, rules_end=, max_block_duration="744h")
                                                   -> ctx of Prom   all of the above

Prom has .url (http://127.0.0.1:PORT), .pid and .process (tests/support.RunningProcess, for its log).

Example (pytest):

    with serve_series([Series("up", {"job": "x"}, [(t0, 1), (t0 + 60, 0)])], tmp_path) as prom:
        requests.get(f"{prom.url}/api/v1/query", params={"query": "up", "time": t0 + 60})

Why --max-block-duration=744h: without it promtool 2.42 writes 2-hour blocks and a month of 100 series takes
~7 minutes instead of seconds. promtool parses the whole file once per block, and blocks are aligned to
multiples of the duration since the epoch, so a month with margins usually spans 2–3 744h blocks: "1488h"
makes it one block and one pass (2–3× faster for big files). Retention is set to 100y because backfilled
data is months old and Prometheus would otherwise delete it at start-up. Samples of one series must be in
time order; series are written in the order given, grouped by metric name (OpenMetrics requires a family's
samples to be contiguous).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import RunningProcess, free_port, running

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
_KINDS = ("gauge", "counter", "unknown")
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Series:
    """One time series. kind is only the OpenMetrics TYPE line; Prometheus 2.42 stores samples the same way."""

    name: str
    labels: dict[str, str]
    samples: Sequence[tuple[float, float]]
    kind: str = "gauge"

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a metric name")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")


@dataclass
class Prom:
    url: str
    process: RunningProcess
    tsdb: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # repr keeps every digit of a float; integers are written without ".0" to keep files small.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_openmetrics(path: Path, series: Iterable[Series]) -> Path:
    """Write series as OpenMetrics text (families contiguous, '# EOF' at the end); returns path."""
    families: dict[str, list[Series]] = {}
    for one in series:
        families.setdefault(one.name, []).append(one)
    with open(path, "w", encoding="utf-8") as out:
        for name, members in families.items():
            kinds = {m.kind for m in members}
            if len(kinds) != 1:
                raise ValueError(f"series of {name} declare different kinds {sorted(kinds)}")
            out.write(f"# TYPE {name} {kinds.pop()}\n")
            for member in members:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(member.labels.items()))
                head = f"{name}{{{labels}}}" if labels else name
                last = float("-inf")
                for ts, value in member.samples:
                    if ts <= last:
                        raise ValueError(f"{head}: samples must be in increasing time order ({ts} after {last})")
                    last = ts
                    out.write(f"{head} {_number(value)} {_number(ts)}\n")
        out.write("# EOF\n")
    return path


def _run(argv: list[str], what: str, timeout: float) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {' '.join(argv)}\n{result.stdout[-2000:]}"
                           f"\n{result.stderr[-2000:]}")


def backfill(openmetrics: Path, tsdb: Path, timeout: float = 300.0, max_block_duration: str = "744h") -> None:
    """Turn an OpenMetrics file into TSDB blocks under tsdb (created if missing).

    promtool parses the whole file once per block it writes (blocks are aligned to multiples of the duration
    since the epoch), so data spanning a 744h boundary costs two passes; a longer duration (e.g. "1488h")
    makes a month plus margins one block and one pass.
    """
    tsdb.mkdir(parents=True, exist_ok=True)
    _run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", f"--max-block-duration={max_block_duration}",
          str(openmetrics), str(tsdb)], "promtool openmetrics backfill", timeout)


def backfill_rules(url: str, rule_files: Sequence[Path], start: float, end: float, tsdb: Path,
                   eval_interval: str = "60s", timeout: float = 300.0) -> None:
    """Evaluate recording rules over [start, end] against the Prometheus at url and add the blocks to tsdb.

    A running Prometheus only loads blocks added behind its back after a restart: serve_series does that.
    """
    staging = tsdb.parent / f"{tsdb.name}-rules"
    shutil.rmtree(staging, ignore_errors=True)
    _run([PROMTOOL, "tsdb", "create-blocks-from", "rules", f"--url={url}", f"--start={int(start)}",
          f"--end={int(end)}", f"--eval-interval={eval_interval}", f"--output-dir={staging}",
          *map(str, rule_files)], "promtool rules backfill", timeout)
    for block in staging.iterdir():
        if block.is_dir() and (block / "meta.json").exists():
            block.rename(tsdb / block.name)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def prometheus(tsdb: Path, workdir: Path, timeout: float = 60.0) -> Iterator[Prom]:
    """A real Prometheus serving tsdb on 127.0.0.1:<free port>, with no scrape targets; stopped by PID on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}",
            "--query.lookback-delta=5m", "--log.level=warn"]
    with running(argv, workdir / f"prometheus-{port}.log", ready_url=f"{url}/-/ready", timeout=timeout) as proc:
        yield Prom(url=url, process=proc, tsdb=tsdb)


@contextlib.contextmanager
def serve_series(series: Iterable[Series], workdir: Path, rule_files: Sequence[Path] = (),
                 rules_start: float | None = None, rules_end: float | None = None,
                 max_block_duration: str = "744h") -> Iterator[Prom]:
    """Write, backfill and serve series (plus recording rules evaluated over [rules_start, rules_end])."""
    workdir.mkdir(parents=True, exist_ok=True)
    tsdb = workdir / "tsdb"
    backfill(write_openmetrics(workdir / "data.om", series), tsdb, max_block_duration=max_block_duration)
    if rule_files:
        if rules_start is None or rules_end is None:
            raise ValueError("rule_files need rules_start and rules_end")
        with prometheus(tsdb, workdir) as prom:
            backfill_rules(prom.url, rule_files, rules_start, rules_end, tsdb)
    with prometheus(tsdb, workdir) as prom:
        yield prom
