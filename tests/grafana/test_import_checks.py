"""The checks a Grafana import makes, on every generated dashboard — and proof each check catches its error."""

from __future__ import annotations

import copy
import json

import pytest

from tests.grafana.importcheck import panels, problems, variables_used
from threenines.dashboards import render_all

MODELS = {name: json.loads(text) for name, text in render_all().items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dashboard_imports_cleanly(name: str):
    assert problems(MODELS[name]) == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dashboard_has_datasource_site_and_customer_variables_and_links(name: str):
    model = MODELS[name]
    variables = [v["name"] for v in model["templating"]["list"]]
    assert variables[0] == "datasource"
    assert {"site", "customer"} <= set(variables)
    assert any(link.get("tags") == ["threenines"] and link.get("keepTime") and link.get("includeVars")
               for link in model["links"])


def _noc() -> dict:
    return copy.deepcopy(MODELS["threenines-noc.json"])


def _first_panel(model: dict) -> dict:
    return next(p for p in panels(model) if p["type"] != "row")


def test_duplicate_panel_ids_are_reported():
    model = _noc()
    model["panels"][2]["id"] = model["panels"][1]["id"]
    assert any("unique" in p for p in problems(model))


def test_overlapping_panels_are_reported():
    model = _noc()
    model["panels"][2]["gridPos"] = dict(model["panels"][1]["gridPos"])
    assert any("overlap" in p for p in problems(model))


def test_gridpos_with_a_string_coordinate_is_reported():
    model = _noc()
    model["panels"][1]["gridPos"]["x"] = "0"
    assert any("integer" in p for p in problems(model))


def test_undefined_variable_is_reported():
    model = _noc()
    _first_panel(model)["targets"][0]["expr"] += ' * on() group_left() vector($rack)'
    assert "variables used but not defined: ['rack']" in problems(model)


def test_fixed_datasource_uid_is_reported():
    model = _noc()
    _first_panel(model)["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    assert any("query A: datasource" in p for p in problems(model))


def test_panel_without_description_is_reported():
    model = _noc()
    del _first_panel(model)["description"]
    assert any("no description" in p for p in problems(model))


def test_variable_references_in_all_grafana_syntaxes_are_found():
    assert variables_used(['rate(x{a=~"$a"}[$__rate_interval])', "${b:queryparam}", "[[c]]",
                           {"url": "${__field.labels.customer}"}]) == {"a", "__rate_interval", "b", "c", "__field"}
