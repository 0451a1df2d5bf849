"""`threenines serve` on an address it cannot bind names that address and the fix, and exits 1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.foundation.exporter_process import inventory_text
from tests.support import VENV_BIN


def test_an_address_in_use_is_named(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.64.1"}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen",
                                 f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state")],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
