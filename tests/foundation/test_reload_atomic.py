"""Issue 22, "reloads that fail half-way report success": a reload is all of it or none, on a real serve.

Any exception in a reload, not only a ConfigError, refuses it: the running inventory stays entirely (a new port is
neither probed nor exported), threenines_config_last_reload_successful turns 0, the reply and the log say why,
and the next good reload applies everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.foundation.faultinject import probing_goes_on, serve_with_faults
from tests.support import http_post, wait_until


def reload(port: int) -> tuple[int, str]:
    status, body = http_post(f"http://127.0.0.1:{port}/-/reload")
    return status, body.decode()


def reload_ok(port: int) -> float | None:
    return sample(scrape(port), "threenines_config_last_reload_successful")


def test_a_reload_that_fails_while_applying_leaves_the_running_inventory_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = serve_with_faults(monkeypatch, tmp_path / "faults")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.61.1"}))
    proc, port = serve(tmp_path, config)
    with proc as exporter:
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20, what="a probe")

        # The new port reaches the scheduler and the engine before the audit webhook fails: all must go back.
        config.write_text(inventory_text({"a": "127.0.61.1", "b": "127.0.61.2"}))
        (faults / "reload-apply").touch()
        status, body = reload(port)
        assert status == 500 and "RuntimeError: injected: apply failed" in body, body
        assert reload_ok(port) == 0
        probing_goes_on(port, "a")
        text = scrape(port)
        assert sample(text, "threenines_service_up", target="b") is None, "a half-applied port is exported"
        assert sample(text, "threenines_probe_total", target="b") is None, "a half-applied port is probed"
        assert "reload failed while applying it, the previous inventory runs again" in exporter.log()

        # Fixed: the same file reloads whole.
        (faults / "reload-apply").unlink()
        status, body = reload(port)
        assert status == 200, body
        assert reload_ok(port) == 1
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="b") == 1, 20,
                   what="the new port probed")
        probing_goes_on(port, "a")


@pytest.mark.parametrize("bad, error", [
    # an unknown time zone name longer than the file system allows (was an OSError half-way through)
    ("    timezone: Europe/Amsterdam\n", "    timezone: " + "X" * 300 + "\n"),
    # a port address that is not one (ConfigError, for comparison: same outcome)
    ("address: '127.0.61.12'", "address: 'not-an-address'"),
])
def test_a_reload_refused_at_load_changes_nothing(tmp_path: Path, bad: str, error: str) -> None:
    config = tmp_path / "inventory.yml"
    good = inventory_text({"a": "127.0.61.11"})
    config.write_text(good)
    proc, port = serve(tmp_path, config)
    with proc as exporter:
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20, what="a probe")
        broken = inventory_text({"a": "127.0.61.11", "b": "127.0.61.12"}).replace(bad, error)
        assert broken != inventory_text({"a": "127.0.61.11", "b": "127.0.61.12"})
        config.write_text(broken)
        status, body = reload(port)
        assert status == 500 and "reload refused, keeping the running inventory" in body, body
        assert str(config) in body  # the error names the file
        assert reload_ok(port) == 0
        assert sample(scrape(port), "threenines_service_up", target="b") is None
        probing_goes_on(port, "a")
        assert "Traceback" not in exporter.log()
