"""`threenines check` warns about secret references it cannot read where it runs (issue 16): serve would refuse
them where it uses them, so the operator hears it before the deployment, with the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from threenines.cli import main

INVENTORY = """exporter: {audit_token: {env: TN_CHECK_TOKEN}}
customers:
  - id: acme
    timezone: Europe/Amsterdam
    contacts:
      version: '1'
      notify: [{email: noc@acme.example}, {webhook: {url: "http://127.0.0.1:9/hook", token: {file: %s}}}]
    ports: [{id: a, address: 127.0.0.5}]
"""


def test_check_warns_about_secrets_it_cannot_read_and_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "hook-token"
    config = tmp_path / "inventory.yml"
    config.write_text(INVENTORY % token_file)
    monkeypatch.delenv("TN_CHECK_TOKEN", raising=False)
    assert main(["check", "--config", str(config)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"warning: {config}:1 exporter.audit_token: environment variable TN_CHECK_TOKEN is not set " \
           "(where this check runs; serve needs it)" in err
    assert any(line.startswith(f"warning: {config}:7 customers[0].contacts.notify[1].webhook.token: cannot read "
                               f"secret file {token_file}") for line in err), err

    # both there: no warning, and never a value
    monkeypatch.setenv("TN_CHECK_TOKEN", "zq-check-token-7731")
    token_file.write_text("zq-hook-token-8820\n")
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "zq-" not in out.out
