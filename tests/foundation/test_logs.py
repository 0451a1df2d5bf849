"""The exporter's log lines are valid logfmt (default) or JSON, as Prometheus exporters write them, from a real
`threenines serve`: every line parses, timestamps are RFC 3339 with zone, a message with spaces and `=` stays
one quoted field."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, scrape
from tests.support import VENV_BIN, free_port, running
from threenines.logs import LogfmtFormatter, quote

PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "=]+)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    fields, pos = {}, 0
    while pos < len(line):
        match = PAIR.match(line, pos)
        assert match, f"not logfmt at {pos}: {line!r}"
        key, value = match.groups()
        fields[key] = json.loads(value) if value.startswith('"') else value
        pos = match.end()
    return fields


def test_values_are_quoted_only_where_logfmt_needs_it() -> None:
    assert quote("acme") == "acme"
    assert quote("") == '""'
    assert quote('a "b"=c\nd') == '"a \\"b\\"=c\\nd"'
    record = logging.LogRecord("threenines.contract.engine", logging.WARNING, "", 0,
                               "outage determined customer=%s at=%.3f",
                               ("acme co", 1790812800.123), None)
    fields = parse_logfmt(LogfmtFormatter().format(record))
    assert fields["level"] == "warn" and fields["logger"] == "threenines.contract.engine"
    assert fields["msg"] == "outage determined customer=acme co at=1790812800.123"
    assert datetime.fromisoformat(fields["ts"]).utcoffset() is not None


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_serve_logs_parse_in_either_format(tmp_path: Path, fmt: str) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.62.1"}))
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "--log.format", fmt, "--log.level", "debug", "serve", "--config",
            str(config), "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"), "--tick", "1"]
    log = tmp_path / "exporter.log"
    with running(argv, log, ready_url=f"http://127.0.0.1:{port}/healthz"):
        assert "threenines_service_up" in scrape(port)
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines, "the exporter logged nothing"
    for line in lines:
        fields = json.loads(line) if fmt == "json" else parse_logfmt(line)
        assert set(fields) >= {"ts", "level", "logger", "msg"}, line
        assert datetime.fromisoformat(fields["ts"]).utcoffset() is not None, line
        assert fields["level"] in ("debug", "info", "warn", "error"), line


