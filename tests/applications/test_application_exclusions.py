"""An exclusion (and a customer report) may name the customer's application checks: `services: [application]`
loads, and where the contract bills applications (applications_billable) the window reaches what consumes the
ledger — here the maintenance silence of the application alerts."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from threenines.alerting.silences import desired_silences
from threenines.config.configfile import ConfigError
from threenines.config.exclusions import load_exclusions
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import parse_inventory_text

LEDGER = """exclusions:
  - id: WWW-MIGRATION
    customer: acme
    services: [application]
    start: 2026-10-07T01:00:00+00:00
    end: 2026-10-07T03:00:00+00:00
    reason: maintenance
    reference: CHG-7
    approved_by: noc@example.net
reports:
  - customer: acme
    service: application
    reported_at: 2026-10-08T08:00:00+00:00
"""
START, END = 1791334800.0, 1791342000.0  # 2026-10-07 01:00 and 03:00 UTC


def inventory(billable: bool) -> Inventory:
    return parse_inventory_text(f"""customers:
  - id: acme
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    ports: [{{id: port-a, address: 192.0.2.10}}]
    applications_billable: {str(billable).lower()}
    applications: [{{id: www, http: {{url: 'http://192.0.2.80/'}}}}]
""")


def test_an_exclusion_and_a_report_may_name_the_application_service(tmp_path: Path) -> None:
    path = tmp_path / "exclusions.yml"
    path.write_text(LEDGER)
    ledger = load_exclusions(path, {"acme": ZoneInfo("UTC")})
    [(exclusion, window)] = ledger.windows("acme", "application", (START - 3600, END + 3600), ZoneInfo("UTC"))
    assert (exclusion.id, window) == ("WWW-MIGRATION", (START, END))
    assert ledger.windows("acme", "connectivity", (START, END), ZoneInfo("UTC")) == []
    assert ledger.reported("acme", "application", START) is not None
    # Billed applications: the agreed maintenance silences the customer's application alerts in its window.
    [silence] = desired_silences(inventory(billable=True), ledger, START - 60, 86400)
    assert dict(silence.matchers)["service"] == "application"
    assert (silence.starts_at, silence.ends_at) == (START, END)


def test_an_unknown_service_still_names_the_field_and_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "exclusions.yml"
    path.write_text(LEDGER.replace("services: [application]", "services: [applications]"))
    with pytest.raises(ConfigError) as err:
        load_exclusions(path, {"acme": ZoneInfo("UTC")})
    assert f"{path}:4 exclusions[0].services" in str(err.value)
    assert "'applications' is not a service: use connectivity, power, application" in str(err.value)
