"""The committed dashboards are exactly what the generator produces (regenerate: `make dashboards`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support import REPO
from threenines.cli import main as threenines
from threenines.dashboards import DASHBOARDS, GRAFANA_VERSION, render_all

COMMITTED = REPO / "grafana" / "dashboards"


def test_committed_dashboards_are_the_generator_output():
    rendered = render_all()
    committed = {path.name for path in COMMITTED.glob("*.json")}
    assert committed == set(rendered), "grafana/dashboards/ holds other files than the generator writes"
    for name, text in rendered.items():
        assert (COMMITTED / name).read_text(encoding="utf-8") == text, (
            f"grafana/dashboards/{name} is not the generator's output: run `make dashboards` and commit it")


def test_generating_twice_gives_identical_json():
    assert render_all() == render_all()


def test_check_mode_fails_on_a_hand_edited_dashboard(tmp_path: Path, capsys):
    shutil.copytree(COMMITTED, tmp_path, dirs_exist_ok=True)
    assert threenines(["dashboards", "--check", "-o", str(tmp_path)]) == 0
    edited = tmp_path / "threenines-noc.json"
    model = json.loads(edited.read_text(encoding="utf-8"))
    model["title"] = "edited in the UI"
    edited.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert threenines(["dashboards", "--check", "-o", str(tmp_path)]) == 1
    assert "threenines-noc.json differs from the generator" in capsys.readouterr().err


def test_write_mode_writes_every_dashboard(tmp_path: Path):
    assert threenines(["dashboards", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DASHBOARDS)


def test_dashboards_target_the_grafana_version_of_the_pinned_sdk():
    # schemaVersion 41 is Grafana 11.6's dashboard schema; the SDK build is pinned to the same release.
    assert GRAFANA_VERSION == "11.6"
    for text in render_all().values():
        assert json.loads(text)["schemaVersion"] == 41


def test_uids_are_stable_and_distinct():
    uids = {name: json.loads(text)["uid"] for name, text in render_all().items()}
    assert uids == {"threenines-noc.json": "threenines-noc", "threenines-sla.json": "threenines-sla",
                    "threenines-power.json": "threenines-power", "threenines-exporter.json": "threenines-exporter"}


def test_queries_mode_prints_a_graph_link_for_every_panel_query(capsys):
    assert threenines(["dashboards", "--queries", "--prometheus", "http://127.0.0.1:9090"]) == 0
    lines = capsys.readouterr().out.splitlines()
    count = sum(len(panel.get("targets", [])) for text in render_all().values()
                for panel in json.loads(text)["panels"])
    assert len(lines) == 2 * count
    assert all(line.startswith("  http://127.0.0.1:9090/graph?g0.expr=") for line in lines[1::2])
