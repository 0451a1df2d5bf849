"""The generated Alertmanager config with the real amtool: valid, every customer's alert reaches the exporter's
delivery webhook (which delivers to that customer's contacts), no secret is written, the templates it names are
written beside it, and `threenines check` fails a config that breaks the promise."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO
from threenines.alerting.alertmanager_config import GeneratorError, Options, render, templates, write_secret_files
from threenines.alerting.notification_bound import check_deployment, load_alertmanager, match_routes
from threenines.cli import main
from threenines.config.inventory_load import load_inventory, parse_inventory_text

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
EXAMPLE_INVENTORY = REPO / "examples" / "inventory.yml"
EXAMPLE_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
EXAMPLE_OPTIONS = Options(noc_emails=("noc@provider.example",))
REGENERATE = ("make alertmanager-example (threenines alertmanager-config --config examples/inventory.yml "
              "--noc-email noc@provider.example -o alertmanager/alertmanager.yml)")


def write_config(directory: Path, text: str) -> Path:
    """The config beside its templates/, as Alertmanager resolves templates: relative to the file."""
    (directory / "templates").mkdir(exist_ok=True)
    for name, template in templates(EXAMPLE_OPTIONS).items():
        (directory / "templates" / name).write_text(template)
    path = directory / "alertmanager.yml"
    path.write_text(text)
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def routed_to(config: Path, labels: dict[str, str]) -> list[str]:
    result = amtool("config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def customer_alert(customer: str, service: str, target: str) -> dict[str, str]:
    return {"alertname": "ThreeninesServiceUnavailable", "customer": customer, "service": service, "target": target,
            "severity": "critical", "audience": "customer"}


def test_the_example_is_what_the_generator_produces() -> None:
    os.chdir(REPO)  # the header names the inventory path as given on the command line
    expected = render(load_inventory("examples/inventory.yml"), EXAMPLE_OPTIONS, source="examples/inventory.yml")
    assert EXAMPLE_CONFIG.read_text() == expected, f"regenerate with: {REGENERATE}"


def test_amtool_accepts_the_example() -> None:
    result = amtool("check-config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def test_every_customer_alert_reaches_its_receiver_and_the_noc(tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE_INVENTORY)
    config = write_config(tmp_path, render(inventory, EXAMPLE_OPTIONS))
    parsed = load_alertmanager(config)
    checked = 0
    for customer in inventory.customers:
        targets = [("connectivity", p.id) for p in customer.ports] + ([("power", "power")] if customer.power else [])
        for service, target in targets:
            labels = customer_alert(customer.id, service, target)
            receivers = routed_to(config, labels)
            assert receivers == [f"customer-{customer.id}", "noc"]
            # the Python routing `threenines check` uses agrees with Alertmanager's own
            assert [r.receiver for r in match_routes(parsed.root, labels)] == receivers
            checked += 1
    assert checked == 4


def test_provider_alerts_and_the_watchdog_never_reach_customers() -> None:
    overdue = {**customer_alert("acme", "connectivity", "uplink-a"), "alertname": "ThreeninesNotificationOverdue",
               "audience": "provider"}
    assert routed_to(EXAMPLE_CONFIG, overdue) == ["noc"]
    assert routed_to(EXAMPLE_CONFIG, {"alertname": "ThreeninesWatchdog", "severity": "none",
                                      "audience": "provider"}) == ["watchdog"]
    assert routed_to(EXAMPLE_CONFIG, customer_alert("unknown-customer", "connectivity", "x")) == ["noc"]


def test_no_secret_is_written_and_env_secrets_become_0600_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"THREENINES_AUDIT_TOKEN": "s3cret-audit", "ACME_PAGERDUTY_ROUTING_KEY": "s3cret-pd",
               "ACME_WEBHOOK_TOKEN": "s3cret-hook"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    options = Options(secrets_dir=str(tmp_path / "secrets"), noc_emails=("noc@provider.example",))
    inventory = load_inventory(EXAMPLE_INVENTORY)
    text = render(inventory, options)
    assert not any(value in text for value in secrets.values())
    written = write_secret_files(inventory, options)
    # The contacts' secrets are the exporter's now (it delivers): Alertmanager reads only the webhook token.
    assert sorted(Path(p).name for p in written) == ["THREENINES_AUDIT_TOKEN"]
    for path in written:
        assert Path(path).read_text() == secrets[Path(path).name]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert f"credentials_file: {path}" in text or f"routing_key_file: {path}" in text


def test_a_contact_kind_without_its_gateway_is_refused() -> None:
    inventory = parse_inventory_text("""
notification: {audit_webhook: {url: "http://127.0.0.1:9839/alertmanager/webhook"}}
customers:
  - id: solo
    timezone: UTC
    contacts: {version: "1", notify: [{sms: "+31201234567"}]}
    ports: [{id: p, address: 192.0.2.1}]
""")
    with pytest.raises(GeneratorError, match="sms_gateway"):
        render(inventory, Options())


def test_check_passes_the_examples_and_prints_each_bound(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--config", str(EXAMPLE_INVENTORY), "--prometheus-config",
                 str(REPO / "prometheus" / "prometheus.yml"), "--alertmanager-config", str(EXAMPLE_CONFIG)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK acme/connectivity ThreeninesServiceUnavailable → customer-acme, noc: worst case 3m22s" in out


def test_check_fails_a_deadline_the_configs_cannot_meet(tmp_path: Path) -> None:
    text = EXAMPLE_INVENTORY.read_text().replace("notification_deadline: 15m", "notification_deadline: 3m")
    inventory_path = tmp_path / "inventory.yml"
    inventory_path.write_text(text)
    results = check_deployment(load_inventory(inventory_path), REPO / "prometheus" / "prometheus.yml", None,
                               EXAMPLE_CONFIG)
    failed = {(r.customer, r.service) for r in results if not r.ok}
    assert failed == {("acme", "connectivity"), ("acme", "power")}
    assert main(["check", "--config", str(inventory_path), "--prometheus-config",
                 str(REPO / "prometheus" / "prometheus.yml"), "--alertmanager-config", str(EXAMPLE_CONFIG)]) == 1


def test_check_fails_when_a_customer_falls_to_a_route_without_the_delivery_webhook(tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE_INVENTORY)
    # an Alertmanager config generated before globex was added
    without_globex = EXAMPLE_CONFIG.read_text().replace('customer="globex"', 'customer="globex-old"')
    config = write_config(tmp_path, without_globex)
    results = {(r.customer, r.service): r for r in check_deployment(
        inventory, REPO / "prometheus" / "prometheus.yml", None, config)}
    assert not results[("globex", "connectivity")].ok
    assert "route to noc, which lack the exporter's delivery webhook" in results[("globex", "connectivity")].problems[0]
    assert results[("acme", "power")].ok


def test_check_fails_a_config_where_alertmanager_still_delivers_itself(tmp_path: Path) -> None:
    # The configs before: Alertmanager's own e-mail and a webhook to the audit path only. Its failed e-mails were
    # invisible to the audit; such a config is refused now.
    text = EXAMPLE_CONFIG.read_text().replace("http://127.0.0.1:9839/alertmanager/deliver",
                                              "http://127.0.0.1:9839/alertmanager/webhook")
    results = check_deployment(load_inventory(EXAMPLE_INVENTORY), REPO / "prometheus" / "prometheus.yml", None,
                               write_config(tmp_path, text))
    assert all(not r.ok and "lack the exporter's delivery webhook" in r.problems[0] for r in results)


def test_output_writes_the_templates_beside_the_config_and_check_needs_them(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "am" / "alertmanager.yml"
    target.parent.mkdir()
    assert main(["alertmanager-config", "--config", str(EXAMPLE_INVENTORY), "--noc-email", "noc@provider.example",
                 "--runbook-base-url", "https://wiki.provider.test/threenines/", "-o", str(target)]) == 0
    assert sorted(p.name for p in (target.parent / "templates").iterdir()) == ["threenines-runbooks.tmpl",
                                                                              "threenines.tmpl"]
    result = amtool("check-config", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    args = ["check", "--config", str(EXAMPLE_INVENTORY), "--prometheus-config",
            str(REPO / "prometheus" / "prometheus.yml"), "--alertmanager-config", str(target)]
    assert main(args) == 0
    capsys.readouterr()
    # the case: the config without its templates/ folder passes amtool, and every e-mail failed
    shutil.rmtree(target.parent / "templates")
    assert amtool("check-config", str(target)).returncode == 0
    assert main(args) == 1
    assert "templates: 'templates/*.tmpl' matches no file" in capsys.readouterr().err


def test_output_refuses_when_the_templates_cannot_be_written(tmp_path: Path) -> None:
    target = tmp_path / "alertmanager.yml"
    (tmp_path / "templates").write_text("a file where the folder should be")
    assert main(["alertmanager-config", "--config", str(EXAMPLE_INVENTORY), "-o", str(target)]) == 1
    assert not target.exists()


def test_the_example_templates_are_what_the_generator_writes() -> None:
    for name, text in templates(EXAMPLE_OPTIONS).items():
        assert (REPO / "alertmanager" / "templates" / name).read_text() == text, f"regenerate with: {REGENERATE}"


def test_the_noc_runbook_links_are_urls_under_the_configured_base(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, text in templates(Options(runbook_base_url="https://wiki.provider.test/threenines/")).items():
        (folder / name).write_text(text)
    alert = tmp_path / "alert.json"
    alert.write_text('{"Alerts": [{"Status": "firing", "Annotations": {"summary": "s", "description": "d", '
                     '"runbook_url": "docs/alerting.md#threeninesnotificationoverdue"}, "Labels": {}}]}')
    result = amtool("template", "render", f"--template.glob={folder / '*.tmpl'}", f"--template.data={alert}",
                    '--template.text={{ template "threenines.text" . }}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Runbook: https://wiki.provider.test/threenines/alerting.md#threeninesnotificationoverdue" in result.stdout


def test_the_notification_templates_render_with_amtool() -> None:
    result = amtool("template", "render", f"--template.glob={REPO / 'alertmanager' / 'templates' / '*.tmpl'}",
                    '--template.text={{ template "threenines.subject" . }}|{{ template "threenines.text" . }}')
    assert result.returncode == 0, result.stdout + result.stderr
    subject, text = result.stdout.split("|", 1)
    assert subject.startswith("[")
    assert "Customer:" in text and "Runbook:" in text
