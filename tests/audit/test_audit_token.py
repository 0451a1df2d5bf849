"""An empty audit token turned authentication off (issue 22): an empty environment variable, or a token file
holding only a newline. It is refused where the inventory is loaded, naming the reference, file and line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text
from tests.support import VENV_BIN
from threenines.config.configfile import ConfigError
from threenines.config.inventory_load import parse_inventory_text
from threenines.config.secrets import SecretError, SecretRef


def config(tmp_path: Path, token_line: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(token_line + "\n" + inventory_text({"uplink-a": "127.0.91.1"}))
    return path


@pytest.mark.parametrize("kind", ["empty env", "newline file"])
def test_an_empty_audit_token_is_refused_at_load_with_the_reference_named(tmp_path: Path, kind: str) -> None:
    env = {**os.environ}
    if kind == "empty env":
        env["TN_EMPTY_TOKEN"] = ""
        path = config(tmp_path, "exporter: {audit_token: {env: TN_EMPTY_TOKEN}}")
        expected = ("inventory.yml:1 exporter.audit_token: environment variable TN_EMPTY_TOKEN is empty: an empty "
                    "secret would turn authentication off; put the secret in TN_EMPTY_TOKEN")
    else:
        (tmp_path / "token").write_text("\n")
        path = config(tmp_path, f"exporter: {{audit_token: {{file: {tmp_path / 'token'}}}}}")
        expected = f"inventory.yml:1 exporter.audit_token: secret file {tmp_path / 'token'} is empty"
    threenines = str(VENV_BIN / "threenines")
    for argv in ([threenines, "check", "--config", str(path)],
                 [threenines, "serve", "--config", str(path), "--listen", "127.0.0.1:0",
                  "--state-dir", str(tmp_path / "state")]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
        assert result.returncode == 1, (argv[1], result.stdout, result.stderr)
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


def test_parse_refuses_an_empty_token_that_is_there_and_leaves_a_missing_one_to_its_use(tmp_path: Path) -> None:
    text = "exporter: {audit_token: {env: TN_TOKEN_AT_LOAD}}\n" + inventory_text({"a": "127.0.91.2"})
    os.environ.pop("TN_TOKEN_AT_LOAD", None)
    ref = parse_inventory_text(text, "inv.yml").exporter.audit_token  # `check` on a host without the secret
    assert ref is not None
    with pytest.raises(SecretError) as unset:
        ref.resolve()
    assert str(unset.value) == "inv.yml:1 exporter.audit_token: environment variable TN_TOKEN_AT_LOAD is not set"
    for blank in ("", "  ", "\n"):
        os.environ["TN_TOKEN_AT_LOAD"] = blank
        try:
            with pytest.raises(ConfigError) as refused:
                parse_inventory_text(text, "inv.yml")
        finally:
            del os.environ["TN_TOKEN_AT_LOAD"]
        assert (refused.value.source, refused.value.line, refused.value.path) == ("inv.yml", 1, "exporter.audit_token")
        assert "TN_TOKEN_AT_LOAD is empty" in refused.value.message


def test_every_secret_reference_refuses_blank_values_not_only_the_token(tmp_path: Path) -> None:
    (tmp_path / "blank").write_text("\n\n")
    with pytest.raises(SecretError, match=r"secret file .*blank is empty"):
        SecretRef(file=str(tmp_path / "blank")).resolve()
    (tmp_path / "binary").write_bytes(b"\xff\xfesecret-bytes")
    with pytest.raises(SecretError) as unreadable:
        SecretRef(file=str(tmp_path / "binary")).resolve()
    assert "secret-bytes" not in str(unreadable.value) and "not UTF-8" in str(unreadable.value)
