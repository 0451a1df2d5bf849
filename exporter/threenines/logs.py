"""Log lines as the Prometheus exporters write them: logfmt (default) or JSON, RFC 3339 UTC timestamps.

`--log.level` and `--log.format` are the exporter-toolkit's flags (node_exporter, blackbox_exporter). Every
value is quoted where logfmt needs it (spaces, quotes, `=`, control characters), so a message that itself
reads `key=value` stays one field and a parser never splits it. Times in messages are written to the
millisecond (the ledgers' precision), not rounded to the second.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warn", "warning", "error")
FORMATS = ("logfmt", "json")


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    fields = {"ts": _timestamp(record.created), "level": record.levelname.lower().replace("warning", "warn"),
              "logger": record.name, "msg": record.getMessage()}
    if record.exc_info:
        fields["err"] = formatter.formatException(record.exc_info)
    return fields


def quote(value: str) -> str:
    """A logfmt value: bare when it is a plain token, else double-quoted with \\, " and control chars escaped."""
    if value and all(c > " " and c not in '"=\\' and c.isprintable() for c in value):
        return value
    escaped = json.dumps(value, ensure_ascii=False)  # JSON string escapes are logfmt's (Go's strconv.Quote)
    return escaped


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={quote(value)}" for key, value in _fields(record, self).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self), ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Root logging to stderr in the chosen format (replaces any handler set before)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
