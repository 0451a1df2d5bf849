"""Run a dashboard's PromQL the way Grafana would: resolve its variables, substitute, query Prometheus.

Variables follow Grafana's Prometheus datasource: `label_values(selector, label)` asks the label-values API,
"All" of a multi-value variable becomes `(a|b|c)` with each value regex-escaped, custom variables use their
current value, and `$__range`, `$__range_s`, `$__interval`, `$__rate_interval` come from the time range.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from dataclasses import dataclass

from tests.support import http_get

_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    step: float          # Grafana's $__interval for the panel width
    rate_interval: str   # Grafana's $__rate_interval: 4 x the datasource's scrape interval here

    @property
    def seconds(self) -> int:
        return round(self.end - self.start)


def api(base_url: str, path: str, params: dict[str, str | float]) -> object:
    """GET a Prometheus HTTP API path; the `data` member, or AssertionError naming Prometheus' error."""
    status, body = http_get(f"{base_url}{path}?{urllib.parse.urlencode(params)}", timeout=60)
    answer = json.loads(body)
    if status != 200 or answer.get("status") != "success":
        raise AssertionError(f"Prometheus answered {status}: {answer.get('errorType')}: {answer.get('error')}")
    return answer["data"]


def substitute(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"${name} is not defined")
        return values[name]

    return _REFERENCE.sub(replace, text)


def _regex(options: list[str]) -> str:
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", option) for option in options]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(model: dict, base_url: str, window: TimeRange) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(name → substituted text, name → options) for every variable, in dashboard order, like Grafana."""
    values = {
        "__range": f"{window.seconds}s", "__range_s": str(window.seconds), "__range_ms": str(window.seconds * 1000),
        "__interval": f"{round(window.step)}s", "__rate_interval": window.rate_interval,
    }
    options: dict[str, list[str]] = {}
    for variable in model.get("templating", {}).get("list", []):
        name, kind = variable["name"], variable["type"]
        if kind == "datasource":
            continue
        if kind == "custom":
            options[name] = [variable["current"]["value"]]
        elif kind == "query":
            match = _LABEL_VALUES.match(variable["query"].strip())
            if not match:
                raise ValueError(f"variable {name}: only label_values(...) queries are understood here")
            params: dict[str, str | float] = {"start": window.start, "end": window.end}
            if match.group("selector"):
                params["match[]"] = substitute(match.group("selector"), values)
            found = api(base_url, f"/api/v1/label/{match.group('label')}/values", params)
            assert isinstance(found, list)
            options[name] = sorted(found)
        else:
            raise ValueError(f"variable {name}: type {kind} is not handled")
        if not options[name]:
            raise AssertionError(f"variable {name} has no values: {variable.get('query')}")
        values[name] = _regex(options[name])
    return values, options


def has_data(result: dict) -> bool:
    """At least one series with at least one value that is a number (NaN is no answer for a NOC)."""
    kind, series = result["resultType"], result["result"]
    if kind == "vector":
        return any(not math.isnan(float(one["value"][1])) for one in series)
    if kind == "matrix":
        return any(not math.isnan(float(value)) for one in series for _, value in one["values"])
    if kind == "scalar":
        return not math.isnan(float(series[1]))
    return False


def run_target(base_url: str, expr: str, instant: bool, window: TimeRange) -> dict:
    if instant:
        return api(base_url, "/api/v1/query", {"query": expr, "time": window.end})  # type: ignore[return-value]
    return api(base_url, "/api/v1/query_range",  # type: ignore[return-value]
               {"query": expr, "start": window.start, "end": window.end, "step": window.step})
