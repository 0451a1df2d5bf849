"""TLS and basic auth on the exporter, from an exporter-toolkit web config file, over real HTTPS."""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.foundation.exporter_process import inventory_text
from tests.support import VENV_BIN, free_port, running, wait_until


def https_get(url: str, context: ssl.SSLContext, user: str | None = None, password: str = "") -> int:
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5, context=context) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_and_basic_auth_protect_metrics(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    hashed = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.56.1"}))
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp_path / "state"), "--web.config.file", str(web)]
    trusted = ssl.create_default_context(cafile=str(cert))
    with running(argv, tmp_path / "exporter.log") as exporter:
        url = f"https://127.0.0.1:{port}/metrics"
        wait_until(lambda: https_get(url, trusted, "prometheus", "scrape-me") == 200, 20, what="HTTPS /metrics")
        assert https_get(url, trusted) == 401
        assert https_get(url, trusted, "prometheus", "wrong") == 401
        assert https_get(url, trusted, "nobody", "scrape-me") == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert "listening on https://" in exporter.log()


def test_a_plain_password_in_the_web_config_is_refused(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: hunter2\n")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.56.2"}))
    result = subprocess.run([str(VENV_BIN / "threenines"), "serve", "--config", str(config),
                             "--web.config.file", str(web)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "web.yml:2 basic_auth_users.prometheus: must be a bcrypt hash" in result.stderr
    assert "hunter2" not in result.stderr
