"""`threenines serve` as a real process: metrics, health, reloads that keep a good config, ICMP modes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import VENV_BIN, http_post, wait_until


def test_loopback_ports_are_up_and_metrics_pass_promtool(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.50.1", "b": "::1"}))
    proc, port = serve(tmp_path, config)
    with proc:
        wait_until(lambda: (sample(scrape(port), "threenines_probe_total", target="b") or 0) >= 2, 20,
                   what="two probes of each port")
        text = scrape(port)
        for target in ("a", "b"):
            assert sample(text, "threenines_service_up", customer="acme", target=target) == 1
            assert sample(text, "threenines_service_known", target=target) == 1
            assert sample(text, "threenines_probe_failures_total", target=target) == 0
            assert 0 < sample(text, "threenines_probe_rtt_seconds", target=target) < 0.5
        assert sample(text, "threenines_customer_service_up", customer="acme", service="connectivity") == 1
        assert sample(text, "threenines_customer_objective_ratio", customer="acme") == pytest.approx(0.999)
        assert sample(text, "threenines_config_last_reload_successful") == 1
        assert sample(text, "threenines_build_info", wire="native") == 1  # the C wire, built by `make test`
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_bad_reload_keeps_the_running_inventory_and_says_why(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.51.1"}))
    proc, port = serve(tmp_path, config)
    with proc as exporter:
        config.write_text(inventory_text({"a": "127.0.51.1", "b": "127.0.51.300"}))
        status, body = http_post(f"http://127.0.0.1:{port}/-/reload")
        assert status == 500
        assert b"customers[0].ports[1].address: '127.0.51.300' is not an IP address" in body
        text = scrape(port)
        assert sample(text, "threenines_config_last_reload_successful") == 0
        assert sample(text, "threenines_service_up", target="a") == 1
        assert sample(text, "threenines_service_up", target="b") is None
        assert "reload refused, keeping the running inventory" in exporter.log()

        config.write_text(inventory_text({"a": "127.0.51.1", "b": "127.0.51.2"}))
        os.kill(exporter.pid, signal.SIGHUP)
        wait_until(lambda: sample(scrape(port), "threenines_config_last_reload_successful") == 1, 10,
                   what="SIGHUP reload")
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="b") == 1, 15,
                   what="the added port to be probed")


def test_unprivileged_icmp_sockets_work_when_the_group_range_allows(tmp_path: Path) -> None:
    sysctl = Path("/proc/sys/net/ipv4/ping_group_range")
    saved = sysctl.read_text()
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.52.1"}))
    try:
        sysctl.write_text("0 0\n")  # root's group only: the test's own process
        proc, port = serve(tmp_path, config, extra=["--unprivileged"])
        with proc as exporter:
            wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 15,
                       what="an unprivileged probe")
            assert "ICMPv4 socket open (unprivileged, native wire)" in exporter.log()
        sysctl.write_text("1 0\n")  # nobody may: a clear error naming the setting
        result = subprocess.run(
            [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", "127.0.0.1:0",
             "--state-dir", str(tmp_path / "s2"), "--unprivileged"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 1
        assert "net.ipv4.ping_group_range" in result.stderr
    finally:
        sysctl.write_text(saved)


def test_serve_refuses_a_bad_inventory_at_start(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.53.1"}).replace("timezone: Europe/Amsterdam", "timezone: Mars"))
    result = subprocess.run([str(VENV_BIN / "threenines"), "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "inventory.yml:3 customers[0].timezone: 'Mars' is not a known time zone" in result.stderr


def test_the_audit_webhook_is_served_with_the_configured_token(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text("exporter: {audit_token: {env: TN_TEST_AUDIT_TOKEN}}\n" + inventory_text({"a": "127.0.54.1"}))
    os.environ["TN_TEST_AUDIT_TOKEN"] = "s3cret-audit-token"
    try:
        proc, port = serve(tmp_path, config)
        with proc as exporter:
            url = f"http://127.0.0.1:{port}/alertmanager/webhook"
            assert http_post(url, b"{}", headers={"Authorization": "Bearer wrong"})[0] == 401
            assert http_post(url, b"not json", headers={"Authorization": "Bearer s3cret-audit-token"})[0] == 400
            assert "s3cret-audit-token" not in exporter.log() + scrape(port)
    finally:
        del os.environ["TN_TEST_AUDIT_TOKEN"]


def test_exclusion_windows_drive_the_excluded_gauge_and_reload_with_the_inventory(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    def iso(delta: timedelta) -> str:
        return (datetime.now(UTC) + delta).isoformat(timespec="seconds")

    def window(ident: str, start: timedelta, end: timedelta, reason: str) -> str:
        return (f"  - {{id: {ident}, customer: acme, services: [connectivity], start: '{iso(start)}', "
                f"end: '{iso(end)}', reason: {reason}, reference: R-{ident}, approved_by: noc@example.net}}\n")

    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.55.1"}))
    exclusions = tmp_path / "exclusions.yml"
    exclusions.write_text("exclusions:\n" + window("now", timedelta(hours=-1), timedelta(hours=1), "maintenance")
                          + window("later", timedelta(days=2), timedelta(days=3), "force_majeure"))
    proc, port = serve(tmp_path, config, extra=["--exclusions", str(exclusions)])
    with proc:
        text = scrape(port)
        assert sample(text, "threenines_customer_service_excluded", customer="acme", service="connectivity",
                      reason="maintenance") == 1
        assert sample(text, "threenines_customer_service_excluded", reason="force_majeure") == 0
        assert sample(text, "threenines_ledger_writes_total", ledger="audit", result="error") == 0

        exclusions.write_text("exclusions:\n" + window("now", timedelta(hours=-1), timedelta(hours=1), "vacation"))
        status, body = http_post(f"http://127.0.0.1:{port}/-/reload")
        assert status == 500 and b"exclusions.yml:2" in body and b"vacation" in body
        assert sample(scrape(port), "threenines_customer_service_excluded", reason="maintenance") == 1

        exclusions.write_text("exclusions:\n" + window("gone", timedelta(hours=-3), timedelta(hours=-2),
                                                       "maintenance"))
        assert http_post(f"http://127.0.0.1:{port}/-/reload")[0] == 200
        assert sample(scrape(port), "threenines_customer_service_excluded", reason="maintenance") == 0
