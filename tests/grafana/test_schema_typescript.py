"""Every dashboard type-checks against Grafana 11.6's own TypeScript types (npm @grafana/schema, tsc)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.grafana.schema_ts import ensure_node_modules, type_check
from threenines.dashboards import render_all

MODELS = {name.removesuffix(".json"): json.loads(text) for name, text in render_all().items()}


@pytest.fixture(scope="module", autouse=True)
def _node_modules():
    ensure_node_modules()


def test_generated_dashboards_type_check(tmp_path: Path):
    result = type_check(MODELS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


BROKEN = {
    "string_gridpos": (lambda m: m["panels"][1]["gridPos"].update(x="0"), "Type 'string' is not assignable"),
    "misspelled_key": (lambda m: m["panels"][1].update(titel="x"), """'"titel"' does not exist"""),
    "numeric_title": (lambda m: m.update(title=7), "not assignable to type 'string'"),
    "unknown_colour_mode": (lambda m: m["panels"][1]["options"].update(colorMode="rainbow"), '"rainbow"'),
    "table_without_frame_index": (lambda m: m["panels"][2]["options"].pop("frameIndex"), "frameIndex"),
}


def test_schema_check_rejects_each_kind_of_mistake(tmp_path: Path):
    # One tsc run over one broken copy per mistake; each copy must fail with its own message.
    broken = {}
    for name, (mutate, _) in BROKEN.items():
        model = copy.deepcopy(MODELS["threenines-noc"])
        mutate(model)
        broken[name] = model
    result = type_check(broken, tmp_path)
    assert result.returncode != 0
    errors = {name: [line for line in result.stdout.splitlines() if line.startswith(f"{name}.ts(")] for name in BROKEN}
    for name, (_, message) in BROKEN.items():
        assert len(errors[name]) == 1 and message in errors[name][0], f"{name}: {errors[name]}"
