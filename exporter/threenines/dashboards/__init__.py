"""Grafana dashboards as code: the NOC overview, SLA month, power and exporter health dashboards.

Built with grafana-foundation-sdk (the build for Grafana 11.6, see docs/dashboards.md) into JSON committed under
grafana/dashboards/; `threenines dashboards -o grafana/dashboards` (make dashboards) regenerates it, and a test
fails when the committed files differ from what this package produces.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from threenines.dashboards import health, noc, power, sla

# The Grafana release whose dashboard schema (schemaVersion 41) the JSON targets.
GRAFANA_VERSION = "11.6"

_INTERVAL_ONLY = ("auto", "auto_count", "auto_min")

# file name under grafana/dashboards/ → builder
DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "threenines-noc.json": noc.build,
    "threenines-sla.json": sla.build,
    "threenines-power.json": power.build,
    "threenines-exporter.json": health.build,
}


def to_model(builder: db.Dashboard) -> dict:
    """The dashboard as Grafana's JSON model, with panel ids numbered in layout order (stable across runs)."""
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for variable in model.get("templating", {}).get("list", []):
        # The SDK writes interval-variable fields on every variable; Grafana 11.6's VariableModel has none of
        # them, and the TypeScript schema check rejects them (docs/dashboards.md).
        if variable.get("type") != "interval":
            for key in _INTERVAL_ONLY:
                variable.pop(key, None)
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    return model


def render(builder: db.Dashboard) -> str:
    return json.dumps(to_model(builder), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}
