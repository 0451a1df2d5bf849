"""Serve backfilled series together with the dashboards' merged-state recording rules, evaluated over the data.

The NOC tiles and the SLA timeline read the `threenines-vantages-merge` recording rules
(prometheus/rules/threenines.rules.yml, threenines.dashboards.merge). A real Prometheus evaluates rules only at
"now", so for a month in the past `promtool tsdb create-blocks-from rules` writes them over the month (only that
group: the rest of the file are window rules the dashboards do not read, and costlier to backfill).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from tests.promdata import Prom, Series, backfill, backfill_rules, prometheus, write_openmetrics
from tests.support import REPO

RULES = REPO / "prometheus" / "rules" / "threenines.rules.yml"
GROUP = "threenines-vantages-merge"


def merge_group() -> dict:
    return next(group for group in yaml.safe_load(RULES.read_text())["groups"] if group["name"] == GROUP)


@contextlib.contextmanager
def serve_with_merged_rules(series: Iterable[Series], workdir: Path, start: float, end: float,
                            eval_interval: int) -> Iterator[Prom]:
    workdir.mkdir(parents=True, exist_ok=True)
    tsdb = workdir / "tsdb"
    openmetrics = write_openmetrics(workdir / "data.om", series)
    backfill(openmetrics, tsdb)
    openmetrics.unlink()  # can be hundreds of MB of text, no longer needed once backfilled
    rules = workdir / "merge.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [merge_group()]}), encoding="utf-8")
    with prometheus(tsdb, workdir / "rules-source") as source:
        backfill_rules(source.url, [rules], start, end, tsdb, eval_interval=f"{eval_interval}s")
    with prometheus(tsdb, workdir) as prom:
        yield prom
