"""Every panel's PromQL with the variables filled in, as links to Prometheus' own graph page.

For a Prometheus without Grafana (`threenines demo`, a quick look on a new site): the dashboards' questions can
be asked directly. Variables become "all" (`.+`), custom ones their default, and `$__range` the dashboard's
default range (for "This month": the month so far, in UTC).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_RELATIVE = re.compile(r"^now-(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool


def range_seconds(time_from: str, now: float) -> int:
    """Seconds covered by a dashboard's default range ending now ("now-6h", or "now/M" for this month)."""
    if time_from == "now/M":
        current = datetime.fromtimestamp(now, UTC)
        return max(60, round(now - current.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()))
    match = _RELATIVE.match(time_from)
    if not match:
        raise ValueError(f"time range {time_from!r} is not understood")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def panel_queries(model: dict, rate_interval: str = "2m", now: float | None = None) -> Iterator[PanelQuery]:
    """The queries of one dashboard model, variables substituted for "all" and the default range."""
    seconds = range_seconds(model["time"]["from"], time.time() if now is None else now)
    values = {"__range": f"{seconds}s", "__range_s": str(seconds), "__rate_interval": rate_interval,
              "__interval": "1m"}
    for variable in model.get("templating", {}).get("list", []):
        if variable["type"] == "custom":
            values[variable["name"]] = variable["current"]["value"]
        elif variable["type"] == "query":
            values[variable["name"]] = ".+"

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            yield PanelQuery(model["title"], panel["title"], target["refId"], _REFERENCE.sub(fill, target["expr"]),
                             bool(target.get("instant")))


def graph_url(prometheus_url: str, query: PanelQuery) -> str:
    """Prometheus' /graph page for the query: the table tab for instant queries, the graph tab otherwise."""
    params = {"g0.expr": query.expr, "g0.tab": "1" if query.instant else "0", "g0.range_input": "6h"}
    return f"{prometheus_url.rstrip('/')}/graph?{urllib.parse.urlencode(params)}"


def query_links(models: list[dict], prometheus_url: str, rate_interval: str = "2m") -> list[str]:
    """"dashboard / panel [ref]" followed by its graph link, for every query of every model."""
    lines = []
    for model in models:
        for query in panel_queries(model, rate_interval=rate_interval):
            lines += [f"{query.dashboard} / {query.panel} [{query.ref}]", f"  {graph_url(prometheus_url, query)}"]
    return lines
