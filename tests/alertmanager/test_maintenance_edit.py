"""`threenines maintenance add/list/remove`: the exclusions file edited safely (validated by the loader, atomic,
comments kept), then a real exporter reloaded and a real Alertmanager synced — no hand-edited YAML."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.alertmanager.test_maintenance import active_silences, alertmanager  # noqa: F401 (fixture)
from tests.foundation.exporter_process import sample, scrape, serve
from tests.support import wait_until
from threenines.cli import main
from threenines.config.exclusions import load_exclusions

INVENTORY = """\
customers:
  - id: acme
    timezone: Europe/Amsterdam
    contacts: {version: "1", notify: [{email: noc@acme.example}]}
    ping: {interval: 2s, packets: 1, timeout: 500ms}
    ports: [{id: uplink-a, address: 127.0.63.1}]
"""
EXISTING = """\
# Agreed with the customers (change board minutes in the wiki).
exclusions:
  - id: OLD-1   # the yearly generator test
    customer: acme
    services: [power]
    start: 2026-06-01T01:00:00+02:00
    end: 2026-06-01T02:00:00+02:00
    reason: maintenance
    reference: CHG-1
    approved_by: noc@provider.example

policy:
  unreported_outages_not_counted: false
"""


def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "inventory.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "exclusions.yml").write_text(EXISTING, encoding="utf-8")
    return tmp_path / "inventory.yml", tmp_path / "exclusions.yml"


def maintenance(*args: str) -> int:
    return main(["maintenance", *args])


def test_add_writes_the_contract_zone_keeps_comments_and_remove_takes_only_that_entry(tmp_path: Path, capsys) -> None:
    config, path = files(tmp_path)
    base = ["--config", str(config), "--exclusions", str(path)]
    assert maintenance("add", *base, "--id", "CHG-2026-1101", "--customer", "acme", "--services", "connectivity",
                       "--start", "2026-12-05T01:00", "--end", "2026-12-05T03:00", "--reference", "CHG-1101",
                       "--approved-by", "jane@acme.example") == 0
    text = path.read_text()
    assert "# Agreed with the customers" in text and "# the yearly generator test" in text
    assert "start: 2026-12-05T01:00:00+01:00" in text  # wall-clock time in Amsterdam, written with its offset
    ledger = load_exclusions(path, {"acme": ZoneInfo("Europe/Amsterdam")})
    assert [ex.id for ex in ledger.exclusions] == ["OLD-1", "CHG-2026-1101"]
    assert ledger.policy.unreported_outages_not_counted is False  # the rest of the file is untouched
    capsys.readouterr()
    assert maintenance("list", *base) == 0
    listed = capsys.readouterr().out
    assert "CHG-2026-1101  acme  connectivity  2026-12-05T01:00+01:00 – 2026-12-05T03:00+01:00  maintenance" in listed
    assert maintenance("remove", *base, "--id", "OLD-1") == 0
    assert [ex.id for ex in load_exclusions(path).exclusions] == ["CHG-2026-1101"]
    assert "# Agreed with the customers" in path.read_text() and "policy:" in path.read_text()


@pytest.mark.parametrize(("args", "error"), [
    (["--start", "2026-12-05T03:00", "--end", "2026-12-05T01:00"], "exclusions[1].end: must be after start"),
    (["--start", "2026-10-25T02:30", "--end", "2026-10-25T04:00"], "happens twice in Europe/Amsterdam"),
    (["--start", "2026-12-05T01:00", "--end", "2026-12-05T03:00", "--id", "OLD-1"], "with id 'OLD-1' exists"),
    (["--start", "next tuesday", "--end", "2026-12-05T03:00"], "is not an ISO 8601 time"),
])
def test_a_bad_entry_is_refused_with_the_loaders_error_and_the_file_is_unchanged(tmp_path: Path, capsys, args,
                                                                                 error: str) -> None:
    config, path = files(tmp_path)
    argv = ["add", "--config", str(config), "--exclusions", str(path), "--id", "NEW", "--customer", "acme",
            "--reference", "CHG-2", "--approved-by", "x@provider.example", *args]
    if "--id" in args:
        argv.remove("NEW")
        argv.remove("--id")
    assert maintenance(*argv) == 1
    assert error in capsys.readouterr().err
    assert path.read_text() == EXISTING
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_add_reloads_the_exporter_and_syncs_the_silence(tmp_path: Path, alertmanager: str, capsys) -> None:  # noqa: F811
    config, path = files(tmp_path)
    now = datetime.now(ZoneInfo("Europe/Amsterdam")).replace(microsecond=0)
    proc, http_port = serve(tmp_path, config, extra=["--exclusions", str(path)])
    with proc:
        assert sample(scrape(http_port), "threenines_customer_service_excluded", customer="acme",
                      service="connectivity", reason="maintenance") is None
        assert maintenance("add", "--config", str(config), "--exclusions", str(path), "--id", "NOW",
                           "--customer", "acme", "--services", "connectivity", "--start",
                           (now - timedelta(minutes=1)).isoformat(), "--end", (now + timedelta(hours=1)).isoformat(),
                           "--reference", "CHG-NOW", "--approved-by", "jane@acme.example",
                           "--exporter", f"http://127.0.0.1:{http_port}", "--alertmanager", alertmanager) == 0
        out = capsys.readouterr().out
        assert "reloaded the exporter" in out and "1 created" in out
        # the reload applied the new window at once (the next tick publishes it)
        wait_until(lambda: sample(scrape(http_port), "threenines_customer_service_excluded", customer="acme",
                                  service="connectivity", reason="maintenance") == 1, 10,
                   what="the exporter to apply the new window")
    [silence] = [s for s in active_silences(alertmanager) if s["createdBy"] == "threenines"]
    assert "NOW" in silence["comment"]
