"""The checks Grafana's dashboard import makes (or that a NOC would notice at once), on the JSON model.

`problems(model)` returns human-readable findings; an empty list means the dashboard imports cleanly:
unique panel ids, gridPos inside the 24-column grid and non-overlapping, every `$variable` defined, every
datasource reference the `${datasource}` variable, every panel titled, described and with a unit or value
mappings, unique non-empty refIds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's global and panel-scoped variables (docs: "Global variables", "Data links").
BUILTINS = {
    "__range", "__range_s", "__range_ms", "__rate_interval", "__rate_interval_ms", "__interval", "__interval_ms",
    "__from", "__to", "__now", "__url_time_range", "__field", "__series", "__value", "__data", "__dashboard",
    "__user", "__org", "__all", "__name", "__timezone",
}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?:[.:][^}]*)?\}|\[\[(\w+)(?::\w+)?\]\]")


def panels(model: dict) -> Iterator[dict]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(model: dict) -> Iterator[tuple[dict, dict]]:
    for panel in panels(model):
        for target in panel.get("targets", []):
            yield panel, target


def variables_used(value: object) -> set[str]:
    """Names of the $variables referenced anywhere in a JSON value (strings only)."""
    if isinstance(value, str):
        return {next(group for group in match.groups() if group) for match in _VARIABLE.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(variables_used(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables_used(v) for v in value)) if value else set()
    return set()


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def _grid_problems(placed: list[dict]) -> list[str]:
    found = []
    for index, panel in enumerate(placed):
        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or any(not isinstance(grid.get(k), int) for k in "xywh"):
            found.append(f"panel {panel.get('id')} {panel.get('title')!r}: gridPos needs integer x, y, w, h: {grid}")
            continue
        if grid["w"] <= 0 or grid["h"] <= 0 or grid["x"] < 0 or grid["y"] < 0 or grid["x"] + grid["w"] > 24:
            found.append(f"panel {panel.get('id')} {panel.get('title')!r}: gridPos {grid} is outside the grid")
        for other in placed[:index]:
            other_grid = other.get("gridPos")
            if isinstance(other_grid, dict) and all(isinstance(other_grid.get(k), int) for k in "xywh") and _overlap(
                    grid, other_grid):
                found.append(f"panels {other.get('id')} and {panel.get('id')} overlap: {other_grid} / {grid}")
    return found


def _datasource_problems(model: dict) -> list[str]:
    found = []
    for panel in panels(model):
        if panel.get("type") != "row" and panel.get("datasource") != DATASOURCE:
            found.append(f"panel {panel.get('id')} {panel.get('title')!r}: datasource {panel.get('datasource')} "
                         f"is not {DATASOURCE}")
    for panel, target in targets(model):
        if target.get("datasource") != DATASOURCE:
            found.append(f"panel {panel.get('id')} query {target.get('refId')}: datasource {target.get('datasource')}"
                         f" is not {DATASOURCE}")
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and variable.get("datasource") != DATASOURCE:
            found.append(f"variable {variable.get('name')}: datasource {variable.get('datasource')} "
                         f"is not {DATASOURCE}")
    for annotation in model.get("annotations", {}).get("list", []):
        source = annotation.get("datasource")
        if source != DATASOURCE and not (isinstance(source, dict) and source.get("uid") == "-- Grafana --"):
            found.append(f"annotation {annotation.get('name')}: datasource {source} is not {DATASOURCE}")
    return found


def _panel_problems(model: dict) -> list[str]:
    found = []
    for panel in panels(model):
        label = f"panel {panel.get('id')} {panel.get('title')!r}"
        if not panel.get("title"):
            found.append(f"panel {panel.get('id')}: no title")
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            found.append(f"{label}: no description")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        overrides = panel.get("fieldConfig", {}).get("overrides", [])
        has_unit = bool(defaults.get("unit")) or any(
            prop.get("id") == "unit" for override in overrides for prop in override.get("properties", []))
        if panel.get("type") != "table" and not (has_unit or defaults.get("mappings")):
            found.append(f"{label}: neither a unit nor value mappings")
        refs = [target.get("refId") for target in panel.get("targets", [])]
        if not refs:
            found.append(f"{label}: no query")
        if any(not ref for ref in refs) or len(set(refs)) != len(refs):
            found.append(f"{label}: refIds must be unique and non-empty, got {refs}")
    return found


def problems(model: dict) -> list[str]:
    found = []
    ids = [panel.get("id") for panel in panels(model)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if duplicates or any(not isinstance(i, int) for i in ids):
        found.append(f"panel ids must be unique integers, got duplicates {duplicates} in {ids}")
    found += _grid_problems(list(model.get("panels", [])))
    for row in model.get("panels", []):
        if row.get("type") == "row" and row.get("panels"):
            found += _grid_problems(row["panels"])
    defined = {variable.get("name") for variable in model.get("templating", {}).get("list", [])}
    undefined = sorted(variables_used(model) - defined - BUILTINS)
    if undefined:
        found.append(f"variables used but not defined: {undefined}")
    found += _datasource_problems(model)
    found += _panel_problems(model)
    if not model.get("uid") or not isinstance(model.get("version"), int):
        found.append(f"uid and version must be set, got {model.get('uid')!r} / {model.get('version')!r}")
    return found
